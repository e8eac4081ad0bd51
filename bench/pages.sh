#!/usr/bin/env bash
# Server render of the status page (/) and the gateways page (/gateways) with 1,000
# and then 10,000 gateways stored (GATEWAYS="1000 10000"): REQUESTS sequential
# requests each, signed in, release build, gzip accepted as a browser does; prints
# the median and p99 in milliseconds and the page's size as sent and unpacked.
# The first ENABLED (150) gateways point at a closed port and keep retrying, so the
# status page's attention list is full (its largest HTML); the rest are disabled, a
# quiet fleet like an online one (set ENABLED=all to have every gateway retrying).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
PORT=${PORT:-3301}
REQUESTS=${REQUESTS:-200}
GATEWAYS=${GATEWAYS:-1000 10000}
ENABLED=${ENABLED:-150}
BIN=target/release/factory-monitor
[ -x "$BIN" ] || cargo leptos build --release --split --precompress

measure() {
  local count=$1 data
  data=$(mktemp -d /tmp/fm-pages.XXXXXX)
  chmod 755 "$data"
  DATA_DIR="$data" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn INITIAL_ADMIN_PASSWORD=bench-admin-password \
    "$BIN" serve >/dev/null &
  local server=$!
  trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' RETURN
  until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do sleep 0.5; done
  local token factory
  token=$(DATA_DIR="$data" "$BIN" token create --name bench --role admin | tail -n1)
  echo "== $count gateways (seeding...)"
  # Ten factories, the gateways spread over them.
  for f in $(seq 1 10); do
    factory=$(curl -sf -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -X POST "http://127.0.0.1:$PORT/api/factories" -d "{\"name\":\"Bench plant $f\"}" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    seq "$f" 10 "$count" | xargs -P 8 -I{} sh -c '
      enabled=false; { [ "$3" = all ] || [ "$0" -le "$3" ]; } && enabled=true
      curl -sf -o /dev/null -H "authorization: Bearer $1" -H "content-type: application/json" \
        -X POST "http://127.0.0.1:$2/api/gateways" \
        -d "{\"factory_id\":\"$4\",\"gateway_id\":\"GW-$0\",\"name\":\"Gateway $0\",\"url\":\"ws://127.0.0.1:9/\",\"email\":\"a@b.example\",\"password\":\"pw\",\"enabled\":$enabled}"
    ' {} "$token" "$PORT" "$ENABLED" "$factory"
  done
  local jar="$data/cookies"
  curl -sf -c "$jar" -o /dev/null -H 'accept: application/json' \
    --data-urlencode "email=admin@factory-monitor.local" --data-urlencode "password=bench-admin-password" \
    "http://127.0.0.1:$PORT/rpc/sign_in"
  sleep 2 # let the fleet's first connection attempts settle
  for path in / /gateways; do
    local times="$data/times"
    : > "$times"
    for _ in $(seq 1 "$REQUESTS"); do
      curl -s -b "$jar" -H 'accept-encoding: gzip, br' -o /dev/null -w '%{http_code} %{time_total}\n' \
        "http://127.0.0.1:$PORT$path" >> "$times"
    done
    local sent plain
    sent=$(curl -s -b "$jar" -H 'accept-encoding: gzip' "http://127.0.0.1:$PORT$path" | wc -c)
    plain=$(curl -s -b "$jar" "http://127.0.0.1:$PORT$path" | wc -c)
    python3 - "$path" "$times" "$sent" "$plain" <<'PY'
import sys
path, file, sent, plain = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [l.split() for l in open(file)]
bad = [r for r in rows if r[0] != "200"]
ms = sorted(float(r[1]) * 1000 for r in rows)
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"{path:10} {len(ms)} requests ({len(bad)} not 200): median {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms; "
      f"{sent/1024:.1f} KiB gzip ({plain/1024:.0f} KiB unpacked)")
PY
  done
}

for count in $GATEWAYS; do
  measure "$count"
done
