#!/usr/bin/env bash
# Load test of the local server in release mode, end to end: builds the server and the load client
# (examples/loadtest.rs), starts the server on a free port with a fresh data dir, runs POST /allocate at
# 1, 4 and 16 keep-alive connections across many SKUs and on one hot SKU (first given PREFILL earlier
# lines, 100,000 by default), reads the server's peak memory
# (VmHWM) and its store statistics, stops it, and writes docs/performance.md.
#
#   scripts/loadtest.sh                 # 10 s per run (+1 s warm-up), 1,000 SKUs
#   SECONDS_PER_RUN=3 scripts/loadtest.sh
#
# Everything stays on 127.0.0.1; each run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-1,4,16}
SKUS=${SKUS:-1000}
PREFILL=${PREFILL:-100000}
OUT=${OUT:-docs/performance.md}
source scripts/lib/local-server.sh

# One 4 KiB write in place + fdatasync, 200 times, in the data dir's file system: the median, in µs
# (the disk's sync latency now; what the store's journal does once per group).
fsync_probe() {
    python3 - "$work/probe" <<'PY'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
os.pwrite(fd, b"\0" * 65536, 0)
os.fsync(fd)
times = []
for i in range(200):
    start = time.perf_counter_ns()
    os.pwrite(fd, b"\1" * 4096, (i % 16) * 4096)
    os.fdatasync(fd)
    times.append(time.perf_counter_ns() - start)
os.close(fd)
os.unlink(sys.argv[1])
print(int(statistics.median(times) / 1000))
PY
}
fsync_before_us=$(fsync_probe)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

start_server
addr=${url#http://}
rss_idle_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")

echo "==> load: $CONNECTIONS connections, $SECONDS_PER_RUN s per run, $SKUS SKUs" >&2
"$client_bin" --addr "$addr" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" \
    --skus "$SKUS" --prefill "$PREFILL" --server-pid "$pid" --json "$work/results.jsonl" | tee "$work/table.md" >&2

hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
stop_server
store_bytes=$(stat -c %s "$work/data/allocation.redb")
fsync_after_us=$(fsync_probe)
stats=$(grep 'store statistics' "$work/server.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$stats"; }
commits=$(field commits); group_commits=$(field group_commits); requests=$(field requests)
largest_group=$(field largest_group)
server_errors=$(sed 's/\x1b\[[0-9;]*m//g' "$work/server.log" | grep -c ' status=5' || true)

seq_p50_ms=$(python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(next(r["p50_ms"] for r in rows if r["connections"]==1 and r["scenario"]!="hot"))' "$work/results.jsonl")
fsync_median_us=$(( fsync_before_us < fsync_after_us ? fsync_before_us : fsync_after_us ))
seq_ratio=$(awk -v p="$seq_p50_ms" -v f="$fsync_median_us" 'BEGIN { printf "%.1f", p * 1000 / f }')
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cores=$(nproc)
kernel=$(uname -r)
fs=$(df -T "$work" | awk 'NR==2 {print $2}')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
today=$(date -u +%Y-%m-%d)
mb() { awk -v kb="$1" 'BEGIN {printf "%.1f", kb / 1024}'; }

{
cat <<DOC
# Performance of the local server

Measured by \`scripts/loadtest.sh\` on $today (commit $commit): the release build of \`local\` with its
defaults (embedded store, every commit fsynced before its answer, info logs to a file, the event relay
running), driven by \`examples/loadtest.rs\`, a tokio HTTP/1.1 keep-alive client on the same machine.
Every request is \`POST /allocate\` of a new order line (qty 1) answered 201 from a batch large enough for
the whole run; anything else counts as an error. Each run lasts $SECONDS_PER_RUN s after a 1 s warm-up.
"Many SKUs" spreads requests round robin over $SKUS products; "hot SKU" sends all of them to one product,
which first gets $PREFILL earlier lines (untimed): its allocations wait in the product's queue and are
applied in groups (one load, one commit each). Server CPU is the server process's user +
system time over the run's wall time (200% = both cores).

Machine: $cores cores ($cpu), Linux $kernel, data dir on $fs. Client and server share the cores.
Conditions: one 4 KiB write in place + fdatasync took ${fsync_before_us} µs (median of 200) before the
runs and ${fsync_after_us} µs after; load average $load_before before, $load_after after (other work on
the machine shows here).

$(cat "$work/table.md")

Sequential allocation (1 connection, many SKUs): median **${seq_p50_ms} ms = ${seq_ratio}×** the fsync
median of the same run (${fsync_median_us} µs, the lower of the two probes); goal at most 2.7×.

Server memory: peak resident (VmHWM) **$(mb "$hwm_kb") MB**; $(mb "$rss_idle_kb") MB after start-up,
$(mb "$rss_kb") MB at the end. Store file after the runs: $((store_bytes / 1024 / 1024)) MB.

Store: $commits commits written in $group_commits fsynced transactions (group commit: on average
$(awk -v c="$commits" -v g="$group_commits" 'BEGIN { if (g > 0) printf "%.1f", c / g; else print "n/a" }')
commits per fsync, at most $largest_group requests in one; the relay's delivery marks ride in the same
groups, $requests writer requests in all). 5xx answers in the server log: $server_errors.

Goals, at 16 connections: many SKUs at least 3,000 allocations/s; the hot SKU at least 80 % of the
many-SKU throughput of the same run, p99 at most 20 ms; zero answers other than 201; under 50 MB
resident after the hot SKU's $PREFILL earlier lines.
DOC
# The hand-written analysis below the marker survives regeneration.
marker='<!-- analysis: kept by scripts/loadtest.sh -->'
echo
echo "$marker"
if [[ -f "$OUT" ]] && grep -qF "$marker" "$OUT"; then
    awk -v m="$marker" 'found { print } $0 == m { found = 1 }' "$OUT"
fi
} > "$work/performance.md"
mv "$work/performance.md" "$OUT"
echo "==> wrote $OUT" >&2
cat "$OUT"
