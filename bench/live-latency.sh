#!/usr/bin/env bash
# Live updates at scale: FLAPPING_GATEWAYS (default 1000) gateways reconnected to a
# closed port so that each changes state once a second, for 10 s, while the status
# page shows 200 of them;
# prints the p95 from each state change on the server to the DOM, the chosen badge's
# delay and the page's slowest answer (the Playwright test in end2end/tests/live.spec.ts,
# run against a release server).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
PORT=${PORT:-3302}
BIN=target/release/factory-monitor
[ -x "$BIN" ] || cargo leptos build --release --split --precompress
data=$(mktemp -d /tmp/fm-live.XXXXXX)
chmod 755 "$data"
DATA_DIR="$data" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn INITIAL_ADMIN_PASSWORD=e2e-admin-password \
  "$BIN" serve >/dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do sleep 0.5; done
cd end2end
BASE_URL="http://127.0.0.1:$PORT" FLAPPING_GATEWAYS=${FLAPPING_GATEWAYS:-1000} \
  npx playwright test tests/live.spec.ts -g flapping --reporter=line 2>&1 | grep -E "flapping|passed|failed|Error"
