# The commands CI runs (`just ci`), plus run and bench helpers. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Serve on the embedded default (SQLite under ./data, 127.0.0.1:8080).
run:
    cargo run

# The whole test suite (PostgreSQL, Redis and S3 tests skip loudly when unreachable).
test:
    cargo test --workspace

# Formatting check.
fmt:
    cargo fmt --all --check

# Lints, warnings denied.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# The domain crate names no adapter technology.
domain-rule:
    scripts/check-domain-deps.sh

# The checked-in diesel schema.rs files match the migrations (needs diesel_cli and PostgreSQL).
schema:
    scripts/check-schema.sh

# Regenerate both schema.rs files from the migrations.
schema-write:
    scripts/check-schema.sh --write

# docs/openapi.json is a valid OpenAPI 3.1 document.
openapi-valid:
    scripts/validate-openapi.sh

# Accept a reviewed change of the OpenAPI document (docs/openapi.json).
snapshots:
    UPDATE_SNAPSHOTS=1 cargo test -p moments --test openapi

# Criterion benchmarks of hashing and token verification, and of the rate limiter
# (in process and on loopback Redis).
bench:
    cargo bench -p moments-crypto --bench crypto
    cargo bench -p moments-redis --bench limiter

# Load benchmark of posts, the feed and votes on PostgreSQL (release build, wrk, pgbench);
# writes its figures to docs/benchmarks.md.
bench-feed:
    cargo build --release -p moments
    python3 scripts/bench-feed.py

# Everything CI checks, in CI's order.
ci: fmt lint domain-rule schema test openapi-valid
