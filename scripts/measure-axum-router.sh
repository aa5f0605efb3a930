#!/usr/bin/env bash
# Measures what serving the Lambda HTTP functions through an axum Router (with `lambda_http`) would
# cost: the `allocate` binary against `examples/axum_lambda.rs` (the same function behind axum routes),
# both built here the same way (`cargo build --release`, x86_64, default features): their stripped
# sizes, and their cold starts by `scripts/measure-cold-start.sh` (FUNCTIONS=allocate), in ROUNDS
# alternating rounds of RUNS runs each. Results: `docs/measurements.md`.
#
# Usage: scripts/measure-axum-router.sh [RUNS] [ROUNDS]     (defaults 15 and 2)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-15}"
rounds="${2:-2}"
cd "$repo"
cargo build --locked --release --bin allocate --example axum_lambda >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/contract/allocate" "$work/axum/allocate"
cp "$target_dir/release/allocate" "$work/contract/allocate/bootstrap"
cp "$target_dir/release/examples/axum_lambda" "$work/axum/allocate/bootstrap"

printf '%-34s %12s\n' binary bytes
printf '%-34s %12s\n' "allocate (the contract's routing)" "$(stat -c %s "$work/contract/allocate/bootstrap")"
printf '%-34s %12s\n' "axum_lambda (axum Router)" "$(stat -c %s "$work/axum/allocate/bootstrap")"

for round in $(seq 1 "$rounds"); do
    for variant in contract axum; do
        echo "== round $round: $variant"
        FUNCTIONS=allocate BOOTSTRAP_DIR="$work/$variant" bash scripts/measure-cold-start.sh "$runs"
    done
done
