#!/usr/bin/env bash
# Optional, for measurements and `sam build` only (not used by the tests or CI): adds the
# pinned cargo-lambda (and the zig it builds with, ~450 MB) to the tools venv that
# scripts/tools-venv.sh makes at $ALLOC_VENV (default <repo>/.venv).
# Afterwards: PATH="$ALLOC_VENV/bin:$PATH" cargo lambda build --release --arm64
# (cargo-lambda finds zig through `python3 -m ziglang` of the first python3 on PATH, which is
# why the venv's bin goes first).
set -euo pipefail

CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.17.1

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ALLOC_VENV:-$repo/.venv}"
stamp="$venv/.cargo-lambda-version"
wanted="cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIGLANG_VERSION"

bash "$repo/scripts/tools-venv.sh"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x "$venv/bin/cargo-lambda" ]]; then
    exit 0
fi

echo "cargo-lambda-venv: installing $wanted into $venv (~450 MB, once)" >&2
log="$venv/.cargo-lambda-install.log"
rm -f "$stamp"
if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$venv/bin/python" -m pip install --quiet --progress-bar off \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION" >"$log" 2>&1; then
    cat "$log" >&2
    echo "cargo-lambda-venv: ERROR: pip install failed (log above, also in $log)" >&2
    exit 1
fi
"$venv/bin/cargo-lambda" lambda --version >/dev/null 2>&1 \
    || { echo "cargo-lambda-venv: ERROR: cargo-lambda installed but does not run" >&2; exit 1; }
echo "$wanted" >"$stamp"
