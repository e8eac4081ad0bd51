#!/usr/bin/env bash
# Server render time of the status page (/) and the gateways page (/gateways) with
# 1,000 gateways stored (issue 6): 200 sequential requests each, signed in, release
# build; prints the median and p99 in milliseconds. The gateways point at a closed
# port, so the fleet is in backoff (every row has an error and a retry time).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
PORT=${PORT:-3301}
REQUESTS=${REQUESTS:-200}
BIN=target/release/factory-monitor
[ -x "$BIN" ] || cargo leptos build --release --split

data=$(mktemp -d /tmp/fm-pages.XXXXXX)
chmod 755 "$data"
export DATA_DIR="$data" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn INITIAL_ADMIN_PASSWORD=bench-admin-password
"$BIN" serve >/dev/null & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do sleep 0.5; done
token=$("$BIN" token create --name bench --role admin | tail -n1)
factory=$(curl -sf -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -X POST "http://127.0.0.1:$PORT/api/factories" -d '{"name":"Bench plant"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo "seeding 1000 gateways..."
seq 1 1000 | xargs -P 8 -I{} curl -sf -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -X POST "http://127.0.0.1:$PORT/api/gateways" \
  -d "{\"factory_id\":\"$factory\",\"gateway_id\":\"GW-{}\",\"name\":\"Gateway {}\",\"url\":\"ws://127.0.0.1:9/\",\"email\":\"a@b.example\",\"password\":\"pw\"}"
jar="$data/cookies"
curl -sf -c "$jar" -o /dev/null -H 'accept: application/json' \
  --data-urlencode "email=admin@factory-monitor.local" --data-urlencode "password=$INITIAL_ADMIN_PASSWORD" \
  "http://127.0.0.1:$PORT/rpc/sign_in"
sleep 2 # let the fleet's first connection attempts settle

for path in / /gateways; do
  times="$data/times"
  : > "$times"
  for _ in $(seq 1 "$REQUESTS"); do
    curl -s -b "$jar" -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$PORT$path" >> "$times"
  done
  bytes=$(curl -s -b "$jar" "http://127.0.0.1:$PORT$path" | wc -c)
  python3 - "$path" "$times" "$bytes" <<'PY'
import sys
path, file, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.split() for l in open(file)]
bad = [r for r in rows if r[0] != "200"]
ms = sorted(float(r[1]) * 1000 for r in rows)
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"{path:10} {len(ms)} requests ({len(bad)} not 200), {size/1024:.0f} KiB: median {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms")
PY
done
