#!/usr/bin/env bash
# `make test`: every check and test, on a fresh machine or a warm one.
# Order: cheap checks first; one build of the server and the wasm; then the
# Rust tests against a private PostgreSQL; then the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# cargo-leptos must never try to download a tool (there is no internet here).
export PATH="$PWD/tools/node_modules/.bin:$PATH"
# cargo-leptos sets this for the server build, and leptos reads it at compile time
# (option_env!): the same value here lets clippy and `cargo test` reuse that build
# instead of compiling the Leptos stack again.
export LEPTOS_OUTPUT_NAME=factory-monitor

started=$(date +%s)
# Each section with the time it starts at, so a slow step shows in CI's log.
section() { printf '\n==> %s  (at %d s)\n' "$*" "$(( $(date +%s) - started ))"; }

section "bootstrap"
scripts/bootstrap.sh

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

section "build (server + wasm, debug)"
cargo leptos build --split

section "test database"
db_dir=target/test-db
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL=$(target/debug/factory-monitor db start --data-dir "$db_dir")
  export DATABASE_URL
  trap 'target/debug/factory-monitor db stop --data-dir "$db_dir" >/dev/null 2>&1 || true' EXIT
fi

section "cargo test"
cargo test --workspace --locked

section "REST API against its OpenAPI document (schemathesis, about 75 s)"
scripts/schemathesis.sh

section "end-to-end (Playwright + Chromium)"
# The server stops its embedded PostgreSQL on SIGTERM; this catches a kill.
e2e_cleanup() { target/debug/factory-monitor db stop --data-dir target/e2e-data/db >/dev/null 2>&1 || true; }
(cd end2end && npx playwright test) || { e2e_cleanup; exit 1; }
e2e_cleanup

echo
echo "make test: all passed in $(( $(date +%s) - started )) s"
