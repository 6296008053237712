#!/usr/bin/env bash
# The domain crate's dependency rule (docs/architecture.md): moments-domain names no adapter
# technology. Fails if any of these is in its normal (non-dev) dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."

banned=(actix-web actix-http actix-rt diesel diesel-async diesel_migrations deadpool deadpool-redis redis
        openidconnect oauth2 jsonwebtoken argon2 bcrypt utoipa sqlx reqwest hyper tokio libsqlite3-sys
        object_store lettre)
status=0
for dep in "${banned[@]}"; do
  # `cargo tree -i` prints the path to `dep` when it is a dependency, and nothing (or a
  # "did not match" error) when it is not.
  if out=$(cargo tree -p moments-domain -e normal -i "$dep" --quiet 2>/dev/null) && [ -n "$out" ]; then
    echo "moments-domain depends on $dep:" >&2
    echo "$out" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "moments-domain depends on no adapter technology (${#banned[@]} crates checked)"
exit $status
