#!/usr/bin/env bash
# Checks template.yaml (or the template given) offline: makes sure the tools venv is there,
# then lints the template as written and its SAM expansion (scripts/check_template.py).
# usage: scripts/check-template.sh [TEMPLATE]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/tools-venv.sh"
venv="${ALLOC_VENV:-$repo/.venv}"
exec "$venv/bin/python" "$repo/scripts/check_template.py" "$@"
