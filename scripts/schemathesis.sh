#!/usr/bin/env bash
# Property-based check of the REST API against its own OpenAPI document
# (/api/openapi.json) with schemathesis: every operation, every check, the
# stateful phase (links inferred from the document), as an admin token.
# Fails on any 5xx, any answer the document does not describe, and any request
# the server judges otherwise than the document does (accepts what it forbids,
# refuses what it allows).
#
#   scripts/schemathesis.sh          bounded run (make test): about 75 seconds
#   scripts/schemathesis.sh --long   long run: 30 minutes, more examples per round
#   scripts/schemathesis.sh --install  only install schemathesis (the bootstrap does)
#   scripts/schemathesis.sh [--long] -- ARGS...   ARGS go to `st run` as well,
#       e.g. -- --include-path-regex '^/api/gateways' --report har
#
# Environment (relative paths are from the repository root):
#   FACTORY_MONITOR_BIN   server binary (default target/debug/factory-monitor)
#   DATABASE_URL          a PostgreSQL server to use; the run makes its own fresh
#                         database there and drops it after. Unset: a private
#                         cluster in target/schemathesis-db is started and stopped.
#   SCHEMATHESIS_LONG=1   same as --long
#   SCHEMATHESIS_MAX_TIME seconds of testing (default 60, long 1800)
#   SCHEMATHESIS_SEED     rerun with a run's seed (its summary prints it); the bounded
#                         run uses a fixed one
#   SCHEMATHESIS_SCHEMA   test against this document (a file) instead of the served one
#   SCHEMATHESIS_VENV     virtualenv for schemathesis (default tools/venv)
#   SCHEMATHESIS_OUT      logs, reports, example database (default target/schemathesis)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5

long=${SCHEMATHESIS_LONG:-0}
install_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --long) long=1; shift ;;
    --install) install_only=1; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--long | --install] [-- st run arguments]" >&2; exit 2 ;;
  esac
done
if [ "$long" = 1 ]; then
  max_time=${SCHEMATHESIS_MAX_TIME:-1800}
  max_examples=200
else
  max_time=${SCHEMATHESIS_MAX_TIME:-60}
  max_examples=25
  # The same cases on every machine, so that make test passes or fails for the code,
  # not for the draw; the long run draws anew each time.
  SCHEMATHESIS_SEED=${SCHEMATHESIS_SEED:-20261130}
fi

bin=${FACTORY_MONITOR_BIN:-target/debug/factory-monitor}
venv=${SCHEMATHESIS_VENV:-tools/venv}
out=${SCHEMATHESIS_OUT:-target/schemathesis}
say() { echo "schemathesis: $*" >&2; }

[ "$install_only" = 1 ] || [ -x "$bin" ] || { say "no server binary at $bin (build first, or set FACTORY_MONITOR_BIN)"; exit 1; }

# 1. schemathesis, pinned, in a project-local virtualenv.
if ! "$venv/bin/st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION"; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv" || { say "python3 with venv is needed (Debian: apt-get install python3-venv)"; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
venv=$(cd "$venv" && pwd)
py="$venv/bin/python"
[ "$install_only" = 1 ] && exit 0

# Everything of this run goes under $out/run (wiped); the example database
# (failing inputs are retried first next time) is kept beside it.
mkdir -p "$out"
out=$(cd "$out" && pwd)
run="$out/run"
rm -rf "$run"
mkdir -p "$run/data"

server_pid=
own_cluster=
database=
admin_url=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$database" ] && [ -n "$admin_url" ] && command -v psql >/dev/null; then
    psql "$admin_url" -qX -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -n "$own_cluster" ]; then
    "$bin" db stop --data-dir "$own_cluster" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 2. A fresh database (the server creates it on first connect), so that earlier
#    runs' objects neither hide nor cause failures.
if [ -z "${DATABASE_URL:-}" ]; then
  own_cluster=target/schemathesis-db
  DATABASE_URL=$("$bin" db start --data-dir "$own_cluster" 2>/dev/null | tail -n1)
fi
base_url=${DATABASE_URL%%\?*}
query=${DATABASE_URL#"$base_url"}
database="schemathesis_$("$py" -c 'import secrets; print(secrets.token_hex(6))')"
admin_url="${base_url%/*}/postgres$query"

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
origin="http://127.0.0.1:$port"
export DATABASE_URL="${base_url%/*}/$database$query"
export LISTEN_ADDR="127.0.0.1:$port"
export DATA_DIR="$run/data"
export ENCRYPTION_KEY=$("$py" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
export INITIAL_ADMIN_PASSWORD=$("$py" -c 'import secrets; print(secrets.token_urlsafe(18))')
export RUST_LOG=${RUST_LOG:-warn}

# 3. The server (no demo: the document is tested, not the simulator).
"$bin" serve >"$run/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "$origin/api/health" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { say "server exited; its log:"; cat "$run/server.log" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$origin/api/health" >/dev/null || { say "server did not answer on $origin"; exit 1; }

ST_TOKEN=$("$bin" token create --name schemathesis --role admin 2>/dev/null | tail -n1)
export ST_TOKEN

# 4. Objects to test against: without them every `{id}` operation only ever
#    sees 404. The gateway points at a closed loopback port, so it stays in
#    backoff and nothing leaves the machine.
api() { # METHOD PATH [JSON] → body on stdout; fails on a non-2xx
  curl -fsS -X "$1" -H "Authorization: Bearer $ST_TOKEN" -H 'content-type: application/json' \
    ${3:+-d "$3"} "$origin$2"
}
json_get() { # KEY... → the value at that path of the JSON on stdin
  "$py" -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[int(k)] if k.isdigit() else v[k]
print(v)' "$@"
}
org=$(api GET /api/organizations | json_get data 0 id)
factory=$(api POST /api/factories '{"name":"Schemathesis Plant","timezone":"Europe/Berlin"}' | json_get id)
factory2=$(api POST /api/factories '{"name":"Second Plant","location":"Hall 2"}' | json_get id)
gateway=$(api POST /api/gateways "{\"factory_id\":\"$factory\",\"gateway_id\":\"GW-ST-001\",\"name\":\"Seed gateway\",
  \"url\":\"ws://127.0.0.1:1\",\"email\":\"tech@plant.example\",\"password\":\"s3cret\"}" | json_get id)

export ST_SEEDED_IDS="$factory $factory2 $gateway"

# 5. Configuration. Dictionaries supply, in positive cases only, values whose
#    rules the document cannot state (a ws:// URL the server will dial: only
#    closed loopback ports; an email the server's rule accepts; an IANA zone)
#    and the seeded ids; negative cases are still generated from the schema.
cat >"$run/schemathesis.toml" <<EOF
base-url = "$origin"
workers = 2
request-timeout = 10
max-time = $max_time
# PostgreSQL cannot store NUL; the API refuses it with 400 (README), which the
# integration tests cover. Left in, every text field "accepts" NUL-free strings only.
generation.allow-x00 = false
generation.max-examples = $max_examples
generation.database = "$out/examples"
cache.directory = "$run/cache"
reports.directory = "$run"
reports.json.enabled = true
reports.junit.enabled = true
hooks = "$PWD/scripts/schemathesis-hooks.py"
# Reproductions show the real bodies (passwords are test values); only the
# token, valid for this run's throwaway database anyway, is masked.
output.sanitization.keys-to-sanitize = ["authorization"]
output.sanitization.sensitive-markers = ["authorization"]

[auth.openapi.bearer]
bearer = "\${ST_TOKEN}"

# schemathesis' default list plus 422, this API's answer for a body naming an
# organization or factory that does not exist: a fact about the data, not
# about the request's shape.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 422, 429, "5xx"]

[dictionaries.urls]
values = ["ws://127.0.0.1:1", "wss://127.0.0.1:1/ws", "ws://[::1]:1", "WS://127.0.0.1:1/a/b"]
[dictionaries.emails]
values = ["tech@plant.example", "a.b+c@gw.plant.example", "OPS@EXAMPLE.COM"]
[dictionaries.timezones]
values = ["UTC", "Europe/Berlin", "America/Chicago", "Asia/Kolkata", "Pacific/Chatham"]
[dictionaries.organizations]
values = ["$org"]
[dictionaries.factories]
values = ["$factory", "$factory2"]
[dictionaries.gateways]
values = ["$gateway"]

[parameters]
"body.url" = { dictionary = "urls" }
"body.email" = { dictionary = "emails" }
"body.timezone" = { dictionary = "timezones" }
"body.organization_id" = { dictionary = "organizations", probability = 0.8 }
"body.factory_id" = { dictionary = "factories", probability = 0.8 }
"query.factory_id" = { dictionary = "factories", probability = 0.5 }

# Seeded ids for everything but DELETE, which would remove them for the rest
# of the run (the stateful phase deletes what it creates itself).
[[operations]]
include-path-regex = "^/api/factories/\\\\{id\\\\}$"
exclude-method = "DELETE"
parameters = { "path.id" = { dictionary = "factories", probability = 0.7 } }

[[operations]]
include-path-regex = "^/api/gateways/\\\\{id\\\\}"
exclude-method = "DELETE"
parameters = { "path.id" = { dictionary = "gateways", probability = 0.7 } }

# Server-Sent Events never end: read the first event (the snapshot) and stop.
[[operations]]
include-path = "/api/events"
max-stream-events = 1
EOF

# 6. The run. max-time is the budget; the outer timeout only guards against a
#    hang (SIGINT lets schemathesis still print what it found).
say "schemathesis $SCHEMATHESIS_VERSION against $origin, ${max_time} s budget"
started=$(date +%s)
run_schemathesis() {
  set +e
  (cd "$run" && timeout --signal=INT --kill-after=10 $((max_time + 40)) \
    "$venv/bin/st" --config-file "$run/schemathesis.toml" run "${SCHEMATHESIS_SCHEMA:-$origin/api/openapi.json}" \
    --checks all --phases examples,coverage,fuzzing,stateful \
    ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} --no-color "$@") 2>&1 | tee "$run/schemathesis.log"
  rc=${PIPESTATUS[0]}
  set -e
}
run_schemathesis "$@"
# Now and then CPython 3.11's parser fails inside hypothesis while it describes one of
# schemathesis's own lambdas ("AST constructor recursion depth mismatch"): the tool
# crashed, no request was judged. Such a run, with no failure found, is run once more.
if [ "$rc" != 0 ] && grep -q "AST constructor recursion depth mismatch" "$run/schemathesis.log" \
   && ! grep -q "^Failures:" "$run/schemathesis.log"; then
  say "schemathesis itself crashed (a CPython parser error in hypothesis); running it again"
  rm -f "$run"/json-*.json "$run"/junit-*.xml
  run_schemathesis "$@"
fi
elapsed=$(( $(date +%s) - started ))

# 7. Summary, and the server's own account of any 5xx.
{
  echo
  echo "schemathesis summary ($SCHEMATHESIS_VERSION, $( [ "$long" = 1 ] && echo long || echo bounded ) run, ${max_time} s budget)"
  echo "  wall time:   ${elapsed} s"
  sed -n 's/^ *Tested: *\([0-9]*\).*/  operations:  \1 tested/p' "$run/schemathesis.log" | tail -n1
  sed -n 's/^ *\([0-9]* generated.*\)/  test cases:  \1/p' "$run/schemathesis.log" | tail -n1
  "$py" - "$run" <<'PY'
import glob, json, sys
reports = sorted(glob.glob(f"{sys.argv[1]}/json-*.json"))
if not reports:
    sys.exit("  no report: schemathesis did not finish")
report = json.load(open(reports[-1]))
failures = report.get("failures", [])
print(f"  failures:    {sum(f['count'] for f in failures) if failures else 'none'}")
for f in failures:
    print(f"    {f['code']} {f['title']} ({f['count']}): {', '.join(f['operations'])}")
for e in report.get("errors", []):
    print(f"  error: {e}")
PY
  sed -n 's/^Seed: \([0-9]*\)/  seed:        \1 (rerun with SCHEMATHESIS_SEED=\1)/p' "$run/schemathesis.log" | tail -n1
  echo "  log, reports, server log: $run"
} >&2
# Without timestamps and positions, so that one cause counts once.
errors=$(sed 's/\x1b\[[0-9;]*m//g' "$run/server.log" | grep ' ERROR ' | sed 's/^[^ ]* *//; s/ at line [0-9]* column [0-9]*//g' |
  cut -c1-240 || true)
if [ -n "$errors" ]; then
  say "server errors (from $run/server.log):"
  sort <<<"$errors" | uniq -c | sort -rn | head -20 >&2
fi
[ "$rc" = 124 ] && say "timed out: the run overran its budget by 40 s"
exit "$rc"
