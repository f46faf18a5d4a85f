#!/usr/bin/env bash
# Send rate over SMTP (issue 9): EMAILS order confirmations, due at once,
# rendered and delivered by `aftercare run --roles send` to postfix's
# smtp-sink on loopback, beside postfix's own smtp-source against the same
# sink in the same run (the reference: what the sink takes from a client
# that renders nothing). Then the same with DKIM signing (an RSA-2048 key).
# Needs PostgreSQL on 127.0.0.1:5432 and postfix's smtp-sink/smtp-source
# (scripts/test installs them). Prints the figures docs/BENCHMARKS.md records.
#
#   scripts/bench-smtp.sh                  # 20,000 emails
#   EMAILS=50000 scripts/bench-smtp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EMAILS="${EMAILS:-20000}"
# smtp-source's parallel sessions: aftercare's default SMTP pool.
SESSIONS="${SESSIONS:-16}"
PG=postgres://postgres@127.0.0.1:5432
PORT=2526
work=$(mktemp -d)
cargo build --release --bin aftercare
bin=target/release/aftercare

sink_pid=""
cleanup() { if [[ -n $sink_pid ]]; then kill "$sink_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
user=()
if [[ $(id -u) == 0 ]]; then user=(-u nobody); fi
/usr/sbin/smtp-sink "${user[@]}" 127.0.0.1:$PORT 1000 &
sink_pid=$!
sleep 0.5

# The size of what aftercare sends, for the reference to send the same.
"$bin" demo --outbox "$work/demo" >/dev/null 2>&1
size=$(find "$work/demo" -name '*.eml' -printf '%s\n' | awk '{ s += $1; n++ } END { printf "%d", s / n }')

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f emails/s (%d in %.2f s)", n / (b - a), n, b - a }'; }

echo "== smtp-source -> smtp-sink: $EMAILS messages of $size bytes, $SESSIONS sessions"
t0=$(now)
/usr/sbin/smtp-source -s "$SESSIONS" -m "$EMAILS" -l "$size" -f shop@example.com -t customer@example.com 127.0.0.1:$PORT
t1=$(now)
echo "  smtp-source: $(rate "$EMAILS" "$t0" "$t1")"

# EMAILS customers, one order each, placed a minute ago: one order
# confirmation each, due now (transactional: no quiet hours, no caps).
python3 - "$EMAILS" >"$work/events.jsonl" <<'PY'
import datetime as dt, json, sys
at = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat()
names = [("hu", "Árpád"), ("th", "สมชาย"), ("zh", "李娜"), ("bg", "Иван"), ("en", "Jane")]
for i in range(int(sys.argv[1])):
    locale, name = names[i % len(names)]
    print(json.dumps({"id": f"e{i}", "type": "order.placed", "occurred_at": at,
        "customer": {"id": f"c{i}", "email": f"c{i}@example.com", "first_name": name, "locale": locale},
        "order": {"id": f"o{i}", "number": f"N-{i}", "currency": "EUR", "total": "129.90",
                  "items": [{"sku": "CAM-200", "name": "DSLR 200", "category": "camera",
                             "quantity": 1, "unit_price": "129.90"}]}}, ensure_ascii=False))
PY

sent() { psql -q -t -A "$1" -c "SELECT count(*) FROM outbox WHERE status = 'sent'"; }

# One timed send of the queued emails; extra environment as arguments.
send_all() {
  local label=$1; shift
  local db=$PG/bench_smtp
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS bench_smtp WITH (FORCE)" -c "CREATE DATABASE bench_smtp"
  "$bin" migrate --database-url "$db" >/dev/null
  "$bin" ingest "$work/events.jsonl" --database-url "$db" >/dev/null 2>&1
  local timefile=$work/time-$label
  # aftercare's defaults: AFTERCARE_SEND_CONCURRENCY 32, AFTERCARE_SMTP_POOL 16
  # (set either in the environment to try others).
  env AFTERCARE_DATABASE_URL="$db" AFTERCARE_SMTP_URL="smtp://127.0.0.1:$PORT" RUST_LOG=warn "$@" \
    /usr/bin/time -v -o "$timefile" "$bin" run --roles send &
  local pid=$!
  local t0 t1 n ta="" tb=""
  local lo=$((EMAILS / 10)) hi=$((EMAILS * 9 / 10))
  t0=$(now)
  while true; do
    n=$(sent "$db")
    if [[ -z $ta && $n -ge $lo ]]; then ta=$(now); fi
    if [[ -z $tb && $n -ge $hi ]]; then tb=$(now); fi
    if [[ $n -ge $EMAILS ]]; then break; fi
    sleep 0.1
  done
  t1=$(now)
  pkill -TERM -P "$pid" 2>/dev/null || true
  wait "$pid" || true
  echo "  aftercare ($label): $(rate "$EMAILS" "$t0" "$t1") from start to the last; steady (10% to 90% sent): $(rate $((hi - lo)) "$ta" "$tb"); peak RSS $(awk '/Maximum resident/ { printf "%.0f MiB", $6 / 1024 }' "$timefile")"
}

echo "== aftercare run --roles send -> smtp-sink: $EMAILS order confirmations, PostgreSQL"
send_all plain
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/dkim.pem" 2>/dev/null
send_all "DKIM rsa-2048" AFTERCARE_DKIM_SELECTOR=bench AFTERCARE_DKIM_DOMAIN=shop.example AFTERCARE_DKIM_KEY_FILE="$work/dkim.pem"
openssl genpkey -algorithm ed25519 -out "$work/dkim-ed25519.pem" 2>/dev/null
send_all "DKIM ed25519" AFTERCARE_DKIM_SELECTOR=bench AFTERCARE_DKIM_DOMAIN=shop.example AFTERCARE_DKIM_KEY_FILE="$work/dkim-ed25519.pem"
rm -rf "$work"
