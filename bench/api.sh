#!/usr/bin/env bash
# REST API load benchmark beside PostgreSQL's own figures, on one embedded
# PostgreSQL, 64 connections each, DURATION seconds per run:
#   pgbench   single-row INSERT into a table shaped like `factories`, and a
#             primary-key SELECT from `factories` (prepared statements)
#   wrk       POST /api/factories, GET /api/factories/:id, and
#             GET /api/gateways?limit=20 with 1,000 gateways stored (retrying
#             against a closed port), reads first, after SETTLE seconds (15)
# Prints requests/s and p99 latency for each. Uses the release build (BIN= to
# measure another binary) and wrk and pgbench (installed if missing).
# Usage: bench/api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
DURATION=${DURATION:-15}
PORT=${PORT:-3300}
CONNECTIONS=${CONNECTIONS:-64}
BIN=${BIN:-target/release/factory-monitor}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v pgbench >/dev/null || apt-get install -y -qq postgresql-contrib >/dev/null
[ -x "$BIN" ] || cargo leptos build --release --split

data=$(mktemp -d /tmp/fm-bench.XXXXXX)
chmod 755 "$data"
export DATA_DIR="$data" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn
"$BIN" serve & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do sleep 0.5; done
token=$("$BIN" token create --name bench --role admin | tail -n1)
db_url=$("$BIN" db start --data-dir "$data/db" 2>/dev/null | tail -n1 | sed "s|/postgres$|/factory_monitor|")
api() { curl -sf -H "authorization: Bearer $token" -H 'content-type: application/json' "$@"; }

factory=$(api -X POST "http://127.0.0.1:$PORT/api/factories" -d '{"name":"Bench plant"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo "seeding 1000 gateways..."
seq 1 1000 | xargs -P 8 -I{} curl -sf -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -X POST "http://127.0.0.1:$PORT/api/gateways" \
  -d "{\"factory_id\":\"$factory\",\"gateway_id\":\"GW-{}\",\"name\":\"Gateway {}\",\"url\":\"ws://127.0.0.1:9/\",\"email\":\"a@b.example\",\"password\":\"pw\"}"
api "http://127.0.0.1:$PORT/api/gateways?limit=1" | grep -o '"total":[0-9]*'
# Each new gateway's first attempts (refused: nothing listens there) and their events come
# in a burst; measure once they are retrying at their steady pace.
sleep "${SETTLE:-15}"

cat > "$data/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"name":"Load test factory","timezone":"Europe/Berlin"}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $token"
LUA
psql -q "$db_url" <<SQL
CREATE TABLE bench_factories (LIKE factories INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
SQL
organization=$(psql -qtA "$db_url" -c "SELECT organization_id FROM factories LIMIT 1")
echo "INSERT INTO bench_factories (organization_id, name, timezone, metadata) VALUES ('$organization', 'Load test factory', 'Europe/Berlin', '{}');" > "$data/insert.sql"
echo "SELECT * FROM factories WHERE id = '$factory' AND deleted_at IS NULL;" > "$data/select.sql"

results=()
run_wrk() { # name, wrk arguments…
  local name=$1; shift
  echo; echo "== $name ($CONNECTIONS connections, ${DURATION}s)"
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@")
  echo "$out"
  results+=("$(printf '%-40s %10s req/s   p99 %s' "$name" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")")")
}
run_pgbench() { # name, script
  local name=$1 script=$2
  echo; echo "== pgbench: $name ($CONNECTIONS connections, ${DURATION}s)"
  local out; out=$(pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$DURATION" -r -f "$script" "$db_url" 2>&1)
  echo "$out" | grep -E "tps|latency"
  local tps; tps=$(awk '/^tps/ {print $3}' <<<"$out" | head -1)
  results+=("$(printf '%-40s %10s req/s   (mean latency %s ms)' "pgbench $name" "${tps%.*}" "$(awk '/latency average/ {print $4}' <<<"$out")")")
}

# Reads first, then writes: tens of thousands of rows inserted would otherwise leave
# autovacuum busy on the shared cores while the reads are measured.
run_pgbench "primary-key SELECT" "$data/select.sql"
run_wrk "GET /api/factories/:id" -H "authorization: Bearer $token" "http://127.0.0.1:$PORT/api/factories/$factory"
run_wrk "GET /api/gateways?limit=20" -H "authorization: Bearer $token" "http://127.0.0.1:$PORT/api/gateways?limit=20"
run_pgbench "single-row INSERT" "$data/insert.sql"
run_wrk "POST /api/factories" -s "$data/post.lua" "http://127.0.0.1:$PORT/api/factories"

echo; echo "== summary"
printf '%s\n' "${results[@]}"
