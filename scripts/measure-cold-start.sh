#!/usr/bin/env bash
# Measures each function's cold start: from spawning its release bootstrap to its first answer, for a
# request that needs no database or topic (a 400/405, an SQS record with bad JSON, a stream record
# that is not an outbox insert), under `cargo lambda watch --only-lambda-apis` (the Runtime API
# emulator), the bootstrap started by hand with AWS_LAMBDA_RUNTIME_API. The invocation is queued
# first, so the time is: process start, logging, AWS config and clients, runtime start, /next, the
# handler, the response POST, the emulator relaying it. Median (and min/max) of RUNS runs each.
#
# Usage: scripts/measure-cold-start.sh [RUNS]     (default 15)
# Env:   FUNCTIONS: the functions to measure, space-separated (default: all seven);
#        BOOTSTRAP_DIR: where <function>/bootstrap are (default: target/lambda/x86_64 built here with
#        `cargo lambda build --release --x86-64 --lambda-dir target/lambda/x86_64` if missing: the arm64
#        build that Lambda runs cannot execute on an x86_64 machine); PORT (default: a free one).
# No AWS call is made: the region and static credentials are set in the environment as Lambda sets
# them, and nothing at start-up may reach the network (no IMDS).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ALLOC_VENV:-$repo/.venv}"
runs="${1:-15}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/lambda}"
bootstrap_dir="${BOOTSTRAP_DIR:-$CARGO_TARGET_DIR/x86_64}"
read -r -a functions <<<"${FUNCTIONS:-add_batch allocate change_batch_quantity allocations reallocate publish_events republish_events}"

bash "$repo/scripts/cargo-lambda-venv.sh"
export PATH="$venv/bin:$PATH"

missing=0
for f in "${functions[@]}"; do [[ -x "$bootstrap_dir/$f/bootstrap" ]] || missing=1; done
if [[ $missing == 1 ]]; then
    bins=()
    for f in "${functions[@]}"; do bins+=(--bin "$f"); done
    (cd "$repo" && nice cargo lambda build --release --x86-64 --no-default-features --features aws \
        --lambda-dir "$bootstrap_dir" "${bins[@]}" >&2)
fi

port="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
work="$(mktemp -d)"
# The emulator runs in an empty crate outside the repo: `watch` needs a crate (`cargo metadata`), and
# would react to the files of the crate it runs in, which others may be editing.
mkdir -p "$work/emulator/src"
printf '[package]\nname = "emulator"\nversion = "0.0.0"\nedition = "2021"\n' >"$work/emulator/Cargo.toml"
echo 'fn main() {}' >"$work/emulator/src/main.rs"
(cd "$work/emulator" && exec cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$port" >"$work/watch.log" 2>&1) &
watch_pid=$!
trap 'kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$repo" "$bootstrap_dir" "$port" "$runs" "$work" "${functions[@]}" <<'PY'
import copy, json, os, socket, statistics, subprocess, sys, threading, time, urllib.request

repo, bootstrap_dir, port, runs, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
functions = sys.argv[6:]

deadline = time.time() + 60
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("cargo lambda watch did not start:\n" + open(os.path.join(work, "watch.log")).read())
        time.sleep(0.05)

def sample(name):
    with open(os.path.join(repo, "events", name)) as f:
        return json.load(f)

def http_event(base, method=None, path=None, body=None):
    event = copy.deepcopy(sample(base))
    if method:
        event["requestContext"]["http"]["method"] = method
        event["routeKey"] = event["routeKey"].replace(event["routeKey"].split()[0], method, 1)
    if path:
        event["rawPath"] = path
        event["requestContext"]["http"]["path"] = path
    if body is not None:
        event["body"] = body
    return event

sqs = sample("reallocate.json")
sqs["Records"] = sqs["Records"][:1]
sqs["Records"][0]["body"] = "{not json"
stream = sample("publish_events.json")
stream["Records"][0]["eventName"] = "MODIFY"
stream["Records"][0]["dynamodb"]["NewImage"]["entity"] = {"S": "product"}

# (event, check of the answer): none of them reads the table or publishes.
cases = {
    "add_batch": (sample("add_batch_bad_input.json"), lambda r: r["statusCode"] == 400),
    "allocate": (sample("allocate_bad_input.json"), lambda r: r["statusCode"] == 400),
    "change_batch_quantity": (
        http_event("change_batch_quantity.json", body='{"ref": "batch-001", "qty": -1}'),
        lambda r: r["statusCode"] == 400),
    "allocations": (http_event("allocations.json", method="POST"), lambda r: r["statusCode"] == 405),
    "reallocate": (sqs, lambda r: [f["itemIdentifier"] for f in r["batchItemFailures"]]
                   == [sqs["Records"][0]["messageId"]]),
    "publish_events": (stream, lambda r: r == {"batchItemFailures": []}),
    # A malformed operator request: refused before any read.
    "republish_events": ({"sku": "SMALL-TABLE", "from": "yesterday"},
                         lambda r: "RFC 3339" in r.get("errorMessage", "")),
}

env = dict(os.environ)
env.update({
    "AWS_LAMBDA_FUNCTION_NAME": "_",
    "AWS_LAMBDA_FUNCTION_VERSION": "1",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/.rt",
    # As Lambda sets them: region and credentials in the environment.
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "example",
    "AWS_SESSION_TOKEN": "example",
    "TABLE_NAME": "allocation-table",
    "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:events",
    "RUST_LOG": "info",
})
for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    env.pop(name, None)

def invoke(event, out):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/2015-03-31/functions/_/invocations",
        data=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        out["body"] = response.read()
    out["t"] = time.perf_counter()

results = {}
for function in functions:
    event, check = cases[function]
    bootstrap = os.path.join(bootstrap_dir, function, "bootstrap")
    times = []
    for run in range(runs + 1):  # run 0 warms the page cache and is not counted
        out = {}
        caller = threading.Thread(target=invoke, args=(event, out))
        caller.start()
        time.sleep(0.15)  # the invocation is queued in the emulator before the function exists
        log = open(os.path.join(work, f"{function}.log"), "ab")
        start = time.perf_counter()
        process = subprocess.Popen([bootstrap], env=env, stdout=log, stderr=log)
        caller.join(30)
        process.kill()
        process.wait()
        log.close()
        if "t" not in out:
            sys.exit(f"{function}: no answer; log in {work}/{function}.log")
        answer = json.loads(out["body"])
        if not check(answer):
            sys.exit(f"{function}: unexpected answer {answer}")
        if run > 0:
            times.append((out["t"] - start) * 1000)
    results[function] = times

print(f"{'function':<24} {'median ms':>10} {'min':>7} {'max':>7}  runs")
for function, times in results.items():
    print(f"{function:<24} {statistics.median(times):>10.1f} {min(times):>7.1f} {max(times):>7.1f}  {len(times)}")
PY
