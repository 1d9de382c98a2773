#!/usr/bin/env bash
# govulncheck against a local Go vulnerability database. The public database
# cannot be reached from these machines, so the database is built offline
# from the golang.org/x/vulndb module (its data/osv files and cmd/indexdb)
# and cached between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
GOVULNCHECK=${GOVULNCHECK:-golang.org/x/vuln/cmd/govulncheck@v1.9.0}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pve-migration
DB="$CACHE/vulndb-$VULNDB_VERSION"

if [ ! -f "$DB/index/db.json" ]; then
  echo "building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION into $DB"
  src=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src/data/osv" ] || { echo "vulndb module has no data/osv at $src" >&2; exit 1; }
  tmp=$(mktemp -d "$CACHE/vulndb.XXXXXX")
  (cd "$src" && GOFLAGS=-mod=mod go run ./cmd/indexdb -vulns data/osv -out "$tmp/db")
  rm -rf "$DB"; mv "$tmp/db" "$DB"; rm -rf "$tmp"
fi
echo "govulncheck with database $DB"
exec go run "$GOVULNCHECK" -db "file://$DB" "$@" ./...
