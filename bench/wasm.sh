#!/usr/bin/env bash
# Bytes of wasm (and JS) over the wire on the first visit of each page (issue 13: at most
# 400 KB of wasm per page, main file plus that page's chunks), measured in headless
# Chromium with an empty cache against the release build as `make run` builds it
# (`--precompress`: brotli twins served as they are). Prints one line per page and
# exits 1 when a page is over budget (WASM_BUDGET_KB, default 400).
# Usage: bench/wasm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
PORT=${PORT:-3302}
BIN=target/release/factory-monitor
[ -x "$BIN" ] && ls target/site/pkg/*.wasm.br >/dev/null 2>&1 || cargo leptos build --release --split --precompress

data=$(mktemp -d /tmp/fm-wasm.XXXXXX)
chmod 755 "$data"
export DATA_DIR="$data" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn INITIAL_ADMIN_PASSWORD=bench-admin-password
"$BIN" serve --demo >/dev/null & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do sleep 0.5; done
(cd end2end && BASE_URL="http://127.0.0.1:$PORT" ADMIN_PASSWORD="$INITIAL_ADMIN_PASSWORD" node ../bench/wasm-transfer.mjs)
