#!/usr/bin/env bash
# Does an allocation cost more on a SKU with a long history? Builds and starts the release local server
# (fresh data dir, 127.0.0.1), then, on one SKU, times sequential allocations (one connection) after
# 0, 10,000 and 50,000 earlier lines (examples/loadtest.rs --growth; after each fill it waits 10 s so the
# server's relay has delivered the fill's events), and prints the medians as a
# Markdown table, with the machine's conditions. Goal: the median at 50,000 within 1.3x of the one at 0.
#
#   scripts/growth.sh                     # levels 0,10000,50000, 300 samples each
#   LEVELS=0,100000 SAMPLES=500 scripts/growth.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LEVELS=${LEVELS:-0,10000,50000}
SAMPLES=${SAMPLES:-300}
source scripts/lib/local-server.sh
start_server

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
table=$("$client_bin" --addr "${url#http://}" --growth "$LEVELS" --samples "$SAMPLES")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
stop_server

cat <<DOC
Measured by \`scripts/growth.sh\` on $(date -u +%Y-%m-%d) (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)):
release \`local\` server, fresh data dir, one SKU; each level times $SAMPLES sequential allocations on one
keep-alive connection after filling the SKU to that many earlier lines. Machine: $(nproc) cores, load
average $load_before before, $load_after after. Server peak resident memory: $((hwm_kb / 1024)) MB.

$table
DOC
