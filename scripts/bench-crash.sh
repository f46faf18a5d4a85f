#!/usr/bin/env bash
# Crash recovery (issue 7, item 8): the time from `kill -9` of the only
# instance, in the middle of sending, to the last in-flight email sent by the
# instance started in its place; and that no email went out twice.
#
#   scripts/bench-crash.sh                 # heartbeat timeout 5s (the default)
#   HEARTBEAT=10m scripts/bench-crash.sh   # leases alone, as before heartbeats
#
# Needs PostgreSQL on 127.0.0.1:5432. Prints the figures docs/BENCHMARKS.md
# records.
set -euo pipefail
cd "$(dirname "$0")/.."
EMAILS="${EMAILS:-3000}"
HEARTBEAT="${HEARTBEAT:-5s}"
PG=postgres://postgres@127.0.0.1:5432
cargo build --release --bin aftercare >/dev/null 2>&1 || cargo build --release --bin aftercare
bin=$(pwd)/target/release/aftercare
work=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_crash WITH (FORCE)" -c "CREATE DATABASE bench_crash"
db="$PG/bench_crash"
"$bin" migrate --database-url "$db" >/dev/null

python3 - "$EMAILS" "$work" <<'PY'
import json, sys, datetime
n, work = int(sys.argv[1]), sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
events = [{
    "id": f"crash-{i}", "type": "order.placed", "occurred_at": now,
    "customer": {"id": f"c{i}", "email": f"c{i}@example.com", "first_name": "Anna",
                 "locale": "hu-HU", "timezone": "Europe/Budapest", "marketing_consent": True},
    "order": {"id": f"o{i}", "number": f"N-{i}", "placed_at": now, "currency": "EUR",
              "total": "129.90", "items": [{"sku": "CAM-200", "name": "DSLR 200", "category": "camera",
                                            "quantity": 1, "unit_price": "129.90"}]},
} for i in range(n)]
for b in range(0, n, 100):
    with open(f"{work}/batch-{b // 100:04d}.json", "w") as f:
        json.dump(events[b:b + 100], f)
PY

sql() { psql -qtA "$db" -c "$1"; }

start() { # port log
  env AFTERCARE_DATABASE_URL="$db" AFTERCARE_OUTBOX_DIR="$work/outbox" AFTERCARE_HTTP_ADDR="127.0.0.1:$1" \
    AFTERCARE_HEARTBEAT_TIMEOUT="$HEARTBEAT" RUST_LOG=warn "$bin" run >"$2" 2>&1 &
  echo $!
}

a=$(start 18181 "$work/a.log")
for _ in $(seq 100); do curl -fs "127.0.0.1:18181/healthz" >/dev/null && break; sleep 0.1; done
for f in "$work"/batch-*.json; do
  curl -fs -o /dev/null -X POST --data-binary "@$f" "127.0.0.1:18181/v1/events"
done
# Kill it once a third has gone out, with the rest in hand.
while [ "$(sql "SELECT count(*) FROM outbox WHERE status = 'sent'")" -lt $((EMAILS / 3)) ]; do sleep 0.05; done
kill -9 "$a"
killed=$(date +%s.%N)
in_flight=$(sql "SELECT count(*) FROM outbox WHERE status <> 'sent' AND lease_until IS NOT NULL")
sent_at_kill=$(sql "SELECT count(*) FROM outbox WHERE status = 'sent'")
b=$(start 18182 "$work/b.log")
deadline=$(( $(date +%s) + 900 ))
while [ "$(sql "SELECT count(*) FROM outbox WHERE status = 'sent'")" -lt "$EMAILS" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "not all sent after 15 minutes" >&2; exit 1; }
  sleep 0.1
done
last=$(sql "SELECT extract(epoch FROM max(at)) FROM deliveries WHERE outcome = 'sent'")
twice=$(sql "SELECT count(*) FROM (SELECT outbox_id FROM deliveries WHERE outcome = 'sent' GROUP BY outbox_id HAVING count(*) > 1) t")
kill "$b"; wait "$b" 2>/dev/null || true
printf 'heartbeat timeout %s: %d emails; killed with %d sent and %d claimed in flight;\n' "$HEARTBEAT" "$EMAILS" "$sent_at_kill" "$in_flight"
python3 -c "print(f'kill -9 -> last in-flight email sent: {float($last) - float($killed):.1f} s; sent twice: $twice')"
