# Sourced by the measurement scripts: builds the release `local` server and the load client, and starts
# and stops one server on 127.0.0.1 with a fresh data dir. Sets `target_dir`, `server_bin`, `client_bin`,
# `work` (a temporary directory, removed on exit), and, once started, `pid` and `url`.

FEATURES=(--release --no-default-features --features local)

echo "==> building (release)" >&2
cargo build "${FEATURES[@]}" --bin local --example loadtest >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
server_bin="$target_dir/release/local"
client_bin="$target_dir/release/examples/loadtest"

work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Starts the server (data in $work/data, log in $work/server.log) and waits until it listens (30 s).
start_server() {
    echo "==> starting the server" >&2
    "$server_bin" --addr 127.0.0.1:0 --data-dir "$work/data" >"$work/stdout" 2>"$work/server.log" &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q '^listening on ' "$work/stdout" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "server exited" >&2; exit 1; }
        sleep 0.1
    done
    url=$(sed -n 's/^listening on //p' "$work/stdout")
    [[ -n "$url" ]] || { echo "server did not start within 30 s" >&2; exit 1; }
}

# Stops the server with SIGTERM and waits for it (30 s).
stop_server() {
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "server did not stop within 30 s" >&2; exit 1; fi
    pid=""
}
