#!/usr/bin/env bash
# REST API load benchmark (issue 4): GET /api/gateways?limit=20 with 1,000 gateways
# stored, and POST /api/factories, each at 64 connections for DURATION seconds.
# Uses the release build and wrk (Debian package `wrk`, installed if missing).
# Usage: bench/api.sh   (prints requests/s and latency percentiles)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
DURATION=${DURATION:-15}
PORT=${PORT:-3300}
BIN=target/release/factory-monitor
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
[ -x "$BIN" ] || cargo leptos build --release --split

data=$(mktemp -d /tmp/fm-bench.XXXXXX)
chmod 755 "$data"
export DATA_DIR="$data" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn
"$BIN" serve & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do sleep 0.5; done
token=$("$BIN" token create --name bench --role admin | tail -n1)
api() { curl -sf -H "authorization: Bearer $token" -H 'content-type: application/json' "$@"; }

factory=$(api -X POST "http://127.0.0.1:$PORT/api/factories" -d '{"name":"Bench plant"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo "seeding 1000 gateways..."
seq 1 1000 | xargs -P 8 -I{} curl -sf -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -X POST "http://127.0.0.1:$PORT/api/gateways" \
  -d "{\"factory_id\":\"$factory\",\"gateway_id\":\"GW-{}\",\"name\":\"Gateway {}\",\"url\":\"ws://127.0.0.1:9/\",\"email\":\"a@b.example\",\"password\":\"pw\"}"
api "http://127.0.0.1:$PORT/api/gateways?limit=1" | grep -o '"total":[0-9]*'

cat > "$data/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"name":"Load test factory","timezone":"Europe/Berlin"}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $token"
LUA

echo; echo "== GET /api/gateways?limit=20 (64 connections, ${DURATION}s)"
wrk -t2 -c64 -d"${DURATION}s" --latency -H "authorization: Bearer $token" "http://127.0.0.1:$PORT/api/gateways?limit=20"
echo; echo "== POST /api/factories (64 connections, ${DURATION}s)"
wrk -t2 -c64 -d"${DURATION}s" --latency -s "$data/post.lua" "http://127.0.0.1:$PORT/api/factories"
