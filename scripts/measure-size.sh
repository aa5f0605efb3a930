#!/usr/bin/env bash
# Measures the stripped size of each Lambda function's bootstrap, as `sam build` would package it:
# `cargo lambda build --release --arm64` (provided.al2023, arm64), in its own target dir.
#
# Usage: scripts/measure-size.sh [--no-build]
# Env:   CARGO_TARGET_DIR (default <repo>/target/lambda), ALLOC_VENV (cargo-lambda's venv, default
#        <repo>/.venv; scripts/cargo-lambda-venv.sh installs it), FEATURES (default "aws": only the
#        functions' code; the template's build uses the default features, which add the local mode's
#        library code, unused by the functions and dropped by the linker).
# A first build takes ~9 min on 2 cores; it runs under `nice` so it does not starve other builds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ALLOC_VENV:-$repo/.venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/lambda}"
features="${FEATURES:-aws}"
functions=(add_batch allocate change_batch_quantity allocations reallocate publish_events republish_events)

cd "$repo"
if [[ "${1:-}" != "--no-build" ]]; then
    bash "$repo/scripts/cargo-lambda-venv.sh"
    bins=()
    for f in "${functions[@]}"; do bins+=(--bin "$f"); done
    # The venv's bin first: cargo-lambda finds zig through `python3 -m ziglang`.
    PATH="$venv/bin:$PATH" nice cargo lambda build --release --arm64 \
        --no-default-features --features "$features" "${bins[@]}" >&2
fi

printf '%-24s %12s %10s  %s\n' function bytes MiB file
for f in "${functions[@]}"; do
    bootstrap="$CARGO_TARGET_DIR/lambda/$f/bootstrap"
    [[ -f "$bootstrap" ]] || { echo "missing $bootstrap (build first)" >&2; exit 1; }
    # The release profile strips already (strip = true); check it rather than assume it.
    if command -v file >/dev/null 2>&1 && file "$bootstrap" | grep -q 'not stripped'; then
        echo "WARNING: $bootstrap is not stripped" >&2
    fi
    bytes=$(stat -c %s "$bootstrap")
    printf '%-24s %12d %10.2f  %s\n' "$f" "$bytes" "$(echo "$bytes / 1048576" | bc -l)" \
        "${bootstrap#"$repo"/}"
done
