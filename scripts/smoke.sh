#!/usr/bin/env bash
# Runs the book's flow against a deployed stack with authenticated requests (SigV4 for
# execute-api by default; --token for a JWT-mode stack): scripts/smoke.py does the work, with the
# tools venv's python (botocore signs). Unique ids per run; exit 0 when every step passed.
# usage: scripts/smoke.sh API_URL [--region REGION] [--token TOKEN] [--wait SECONDS]
#   API_URL: the stack's ApiUrl output, e.g.
#   scripts/smoke.sh "$(aws cloudformation describe-stacks --stack-name allocation \
#       --query "Stacks[0].Outputs[?OutputKey=='ApiUrl'].OutputValue" --output text)"
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 1 || "$1" == -* && "$1" != "-h" && "$1" != "--help" ]]; then
    echo "usage: scripts/smoke.sh API_URL [--region REGION] [--token TOKEN] [--wait SECONDS]" >&2
    exit 2
fi
bash "$repo/scripts/tools-venv.sh"
venv="${ALLOC_VENV:-$repo/.venv}"
exec "$venv/bin/python" "$repo/scripts/smoke.py" "$@"
