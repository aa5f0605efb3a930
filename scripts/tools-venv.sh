#!/usr/bin/env bash
# Makes sure the Python venv at $ALLOC_VENV (default <repo>/.venv) holds the pinned tools of
# scripts/requirements-tools.txt: moto[server], cfn-lint, cfn-lint-serverless, aws-sam-translator,
# schemathesis.
#
# Idempotent and fast when nothing changed: a stamp file in the venv records the hash of the
# requirements and the interpreter; when it matches, nothing runs (no pip). Otherwise it
# prints one progress line, (re)creates the venv if needed and installs. Concurrent callers
# (parallel test binaries) are serialised with flock when available.
#
# Env: ALLOC_VENV (venv path), PYTHON (interpreter to create it with, default python3).
# Prints nothing when up to date; one line on stderr when it installs; fails loudly (pip's log
# on stderr, non-zero exit) when anything goes wrong.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ALLOC_VENV:-$repo/.venv}"
req="$repo/scripts/requirements-tools.txt"
python="${PYTHON:-python3}"
stamp="$venv/.tools-requirements.sha256"

die() { echo "tools-venv: ERROR: $*" >&2; exit 1; }

[[ -f "$req" ]] || die "missing $req"

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1
    else shasum -a 256 | cut -d' ' -f1
    fi
}

# The wanted stamp: the requirements' content plus the interpreter the venv was built from
# (recorded at install time in pyvenv.cfg, so the fast path runs no python at all).
wanted_stamp() {
    { cat "$req"; grep -E '^version' "$venv/pyvenv.cfg" 2>/dev/null || true; } | sha256
}

up_to_date() {
    [[ -x "$venv/bin/python" && -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(wanted_stamp)" ]]
}

# Fast path: no lock, no python, no pip.
if up_to_date; then exit 0; fi

mkdir -p "$venv"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv/.tools.lock"
    flock 9
    # Someone else may have finished the install while we waited.
    if up_to_date; then exit 0; fi
fi

command -v "$python" >/dev/null 2>&1 || die "$python not found (set PYTHON to a python >= 3.9)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || die "$python is older than 3.9"

echo "tools-venv: installing moto, cfn-lint (+ serverless rules), aws-sam-translator, schemathesis into $venv (about a minute, once)" >&2
log="$venv/.tools-install.log"

# A venv whose interpreter is gone or broken (python upgraded, copied tree) is rebuilt.
if ! { [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; }; then
    # Empty it but keep the lock file we hold (venv --clear would delete it too).
    find "$venv" -mindepth 1 -maxdepth 1 ! -name .tools.lock -exec rm -rf {} +
    "$python" -m venv "$venv" >"$log" 2>&1 \
        || { cat "$log" >&2; die "could not create the venv at $venv with $python"; }
fi

rm -f "$stamp"
if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$venv/bin/python" -m pip install --quiet --progress-bar off -r "$req" >"$log" 2>&1; then
    cat "$log" >&2
    die "pip install -r $req failed (log above, also in $log)"
fi

# Smoke test: the tools import and the moto server entry point exists.
"$venv/bin/python" -c 'import moto, cfnlint, samtranslator, cfn_lint_serverless, schemathesis' 2>>"$log" \
    || { cat "$log" >&2; die "tools installed but do not import"; }
[[ -x "$venv/bin/moto_server" ]] || die "moto_server missing from $venv/bin"
[[ -x "$venv/bin/schemathesis" ]] || die "schemathesis missing from $venv/bin"

wanted_stamp >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
