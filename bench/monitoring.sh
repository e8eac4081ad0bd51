#!/usr/bin/env bash
# Condition-monitoring storage (issue 14), on a private PostgreSQL:
#   - a generated history of overall values: SENSORS sensors read hourly for a year
#     (default 1,000 sensors, 8.76 M rows, 3 GB, a few minutes; the issue's full figure is
#     SENSORS=10000, 88 M rows: 21 GB of disk and 13 minutes on 2 cores; the rows go in
#     before the table's indexes are built, as a bulk load would);
#   - the table's size per 1,000 sensors per year;
#   - the trend query `Store::sensor_trend` runs: one sensor over one year, 8,760
#     readings (pgbench, one client, a random sensor each time); the whole request,
#     bucketing and JSON included, is timed through the API at the end;
#   - inserts of one reading's overall values, single-row transactions (pgbench, 4 clients).
# The computation's own rate is `cargo bench -p analysis --bench overall`.
# Usage: [SENSORS=1000] [DURATION=10] [BIN=target/release/factory-monitor] bench/monitoring.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SENSORS=${SENSORS:-1000}
DURATION=${DURATION:-10}
BIN=${BIN:-target/debug/factory-monitor}
[ -x "$BIN" ] || cargo build

data=$(mktemp -d /tmp/fm-monitoring.XXXXXX)
chmod 755 "$data"
trap '"$BIN" db stop --data-dir "$data/db" >/dev/null 2>&1 || true; rm -rf "$data"' EXIT
url=$("$BIN" db start --data-dir "$data/db" 2>/dev/null | grep -o 'postgres://[^ ]*' | tail -n1)
DATABASE_URL="$url" DATA_DIR="$data" "$BIN" migrate >/dev/null

echo "generating $SENSORS sensors x 8,760 hourly overall values..."
started=$(date +%s)
psql -q "$url" <<SQL
CREATE TEMP TABLE kept_indexes AS
    SELECT indexdef FROM pg_indexes WHERE tablename = 'overall_values' AND indexname <> 'overall_values_pkey';
ALTER TABLE overall_values DROP CONSTRAINT overall_values_pkey;
DROP INDEX overall_values_serial_at_idx;
INSERT INTO overall_values
SELECT gen_random_uuid(), s, t,
       a, a * 2.8, v, 2.8, a * 0.8, a * 2.5, v * 0.8, 3.1, a * 0.6, a * 2.9, v * 0.6, 3.3, 30 + random() * 10
FROM generate_series(1, $SENSORS) AS s,
     generate_series(now() - interval '365 days', now() - interval '1 hour', interval '1 hour') AS t,
     LATERAL (SELECT (0.2 + random() * 0.05)::real AS a, (1.5 + random())::real AS v) AS values;
SET maintenance_work_mem = '1GB';
ALTER TABLE overall_values ADD PRIMARY KEY (reading_id);
DO \$\$ DECLARE definition text; BEGIN
    FOR definition IN SELECT indexdef FROM kept_indexes LOOP EXECUTE definition; END LOOP;
END \$\$;
VACUUM ANALYZE overall_values;
SQL
echo "generated in $(( $(date +%s) - started )) s"
psql -qtA "$url" <<SQL
SELECT format('rows: %s; table %s, index %s, together %s; per 1,000 sensors per year: %s',
       (SELECT count(*) FROM overall_values),
       pg_size_pretty(pg_relation_size('overall_values')),
       pg_size_pretty(pg_indexes_size('overall_values')),
       pg_size_pretty(pg_total_relation_size('overall_values')),
       pg_size_pretty(pg_total_relation_size('overall_values') * 1000 / $SENSORS));
SQL

# The statement of Store::sensor_trend (crates/store/src/machines.rs) for velocity over
# one year; the 500 buckets are cut from its rows in the server.
cat > "$data/trend.sql" <<SQL
\set serial random(1, $SENSORS)
SELECT reading_id, at, x_velocity_rms AS x, y_velocity_rms AS y, z_velocity_rms AS z FROM overall_values
WHERE serial = :serial AND at >= now() - interval '365 days' AND at < now() ORDER BY at;
SQL
cat > "$data/insert.sql" <<SQL
INSERT INTO overall_values VALUES (gen_random_uuid(), 1, now(), 0.2, 0.6, 1.5, 2.8, 0.2, 0.6, 1.5, 2.8, 0.2, 0.6, 1.5, 2.8, 31.2);
SQL
echo
echo "== trend: one sensor, one year, 500 buckets (${DURATION}s, 1 client)"
pgbench -n -r -f "$data/trend.sql" -c 1 -T "$DURATION" "$url" 2>&1 | grep -E "latency average|tps =|latency stddev"
echo
echo "== storing one reading's overall values (${DURATION}s, 4 clients)"
pgbench -n -f "$data/insert.sql" -c 4 -j 2 -T "$DURATION" "$url" 2>&1 | grep -E "latency average|tps ="

# The whole request through the API (debug build unless BIN says otherwise): the sensors
# are made known by putting them on a machine.
psql -q "$url" <<SQL
WITH f AS (INSERT INTO factories (organization_id, name) SELECT id, 'Bench plant' FROM organizations LIMIT 1 RETURNING id),
     m AS (INSERT INTO machines (factory_id, name, kind) SELECT id, 'Bench machine', 'motor' FROM f RETURNING id)
INSERT INTO measurement_points (machine_id, name, serial) SELECT m.id, 'point ' || s, s FROM m, generate_series(1, $SENSORS) s;
SQL
PORT=${PORT:-3303}
token=$(DATABASE_URL="$url" DATA_DIR="$data" "$BIN" token create --name bench --role admin 2>/dev/null | tail -n1)
DATABASE_URL="$url" DATA_DIR="$data" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn "$BIN" serve >/dev/null 2>&1 & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; "$BIN" db stop --data-dir "$data/db" >/dev/null 2>&1 || true; rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; do sleep 0.5; done
from=$(date -u -d '365 days ago' +%Y-%m-%dT%H:%M:%SZ); to=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo
echo "== GET /api/sensors/{serial}/trend, one year, 500 buckets (100 requests, random sensors)"
for _ in $(seq 100); do
  curl -s -o /dev/null -w '%{time_total}\n' -H "authorization: Bearer $token" \
    "http://127.0.0.1:$PORT/api/sensors/$(( RANDOM % SENSORS + 1 ))/trend?value=velocity_rms&from=$from&to=$to&buckets=500"
done | sort -n | awk '{ t[NR] = $1 * 1000 } END { printf "median %.1f ms, p95 %.1f ms, max %.1f ms\n", t[int(NR/2)], t[int(NR*0.95)], t[NR] }'
