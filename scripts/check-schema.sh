#!/usr/bin/env bash
# Regenerates both diesel schema.rs files from the migrations and fails if the checked-in ones
# differ. With --write, updates them instead. Needs diesel_cli and a reachable PostgreSQL
# (MOMENTS_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

write=false
[ "${1:-}" = "--write" ] && write=true
admin_url="${MOMENTS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base_url="${admin_url%/*}"
db="moments_schema_check_$$"
tmp="$(mktemp -d)"
cleanup() {
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

psql "$admin_url" -qc "CREATE DATABASE $db" >/dev/null
diesel migration run --migration-dir migrations/postgres --database-url "$base_url/$db" >/dev/null
diesel print-schema --database-url "$base_url/$db" >"$tmp/postgres.rs"

diesel migration run --migration-dir migrations/sqlite --database-url "$tmp/sqlite.db" >/dev/null
diesel print-schema --database-url "$tmp/sqlite.db" >"$tmp/sqlite.rs"

status=0
for store in postgres sqlite; do
  target="crates/moments-$store/src/schema.rs"
  if $write; then
    cp "$tmp/$store.rs" "$target"
    echo "wrote $target"
  elif ! diff -u "$target" "$tmp/$store.rs"; then
    echo "$target is out of date with migrations/$store: run scripts/check-schema.sh --write" >&2
    status=1
  fi
done
# Both migration sets must also undo cleanly (down.sql works).
diesel migration redo --all --migration-dir migrations/postgres --database-url "$base_url/$db" >/dev/null
diesel migration redo --all --migration-dir migrations/sqlite --database-url "$tmp/sqlite.db" >/dev/null
[ $status -eq 0 ] && echo "schema.rs files match the migrations; down migrations run"
exit $status
