#!/usr/bin/env bash
# Service benchmarks (issue: the service), on this machine with the broker and
# the database on it too. Needs PostgreSQL on 127.0.0.1:5432 and tansu on
# 127.0.0.1:9092 (scripts/test starts both). Prints the figures that
# docs/BENCHMARKS.md records.
#
#   scripts/bench-service.sh            # all three
#   scripts/bench-service.sh ingest     # Kafka -> PostgreSQL ingest rate vs a bare consumer
#   scripts/bench-service.sh drain      # 1,000,000 pending, 100,000 due at once; RSS
#   scripts/bench-service.sh lag        # wake-up lag at a steady 1,000 due per second
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-200000}"
CUSTOMERS="${CUSTOMERS:-20000}"
PG=postgres://postgres@127.0.0.1:5432
BROKERS=127.0.0.1:9092
what="${1:-all}"

cargo build --release --bin aftercare --example loadgen
bin=target/release/aftercare
lg=target/release/examples/loadgen

fresh_db() {
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
  echo "$PG/$1"
}

# Runs `aftercare run` under /usr/bin/time in the background and samples its
# resident memory every 250 ms (RSS_LOG keeps the samples: seconds MiB);
# sets $pid, $timefile, $rss_pid.
start_run() {
  local db=$1 roles=$2 seqs=$3 tpls=$4; shift 4
  timefile=$(mktemp)
  env AFTERCARE_DATABASE_URL="$db" AFTERCARE_OUTBOX_DIR="$(mktemp -d)" RUST_LOG=warn "$@" \
    /usr/bin/time -v -o "$timefile" "$bin" --sequences "$seqs" --templates "$tpls" run --roles "$roles" &
  pid=$!
  local child="" i=0
  while [[ -z $child && $i -lt 50 ]]; do
    child=$(pgrep -P "$pid" || true)
    [[ -n $child ]] || sleep 0.1
    i=$((i + 1))
  done
  rss_pid=""
  if [[ -n $child ]]; then
    "$lg" rss --pid "$child" --out "${RSS_LOG:-/dev/null}" | sed 's/^/  aftercare run: /' &
    rss_pid=$!
  fi
}

stop_run() {
  pkill -TERM -P "$pid" 2>/dev/null || true
  wait "$pid" || true
  if [[ -n $rss_pid ]]; then wait "$rss_pid" || true; fi
  grep -E "Maximum resident set size|User time|System time|Elapsed" "$timefile" | sed 's/^\s*/  aftercare run: /'
}

if [[ $what == all || $what == ingest ]]; then
  echo "== ingest: $EVENTS events from $CUSTOMERS customers, Kafka -> PostgreSQL"
  topic="bench-ingest-$$"
  $lg produce --brokers $BROKERS --topic "$topic" --events "$EVENTS" --customers "$CUSTOMERS"
  $lg consume-bare --brokers $BROKERS --topic "$topic" --count "$EVENTS"
  $lg consume-bare --brokers $BROKERS --topic "$topic" --count "$EVENTS" --like-service
  db=$(fresh_db bench_ingest)
  $bin migrate --database-url "$db" >/dev/null
  # What the run writes and costs, measured around it (docs/BENCHMARKS.md,
  # section 17): the machine's CPU, WAL, checkpoints.
  psql -q "$db" -c "CHECKPOINT"
  lsn0=$(psql -qtA "$db" -c "SELECT pg_current_wal_lsn()")
  ck0=$(psql -qtA "$db" -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
  cpu0=$(awk '/^cpu /{print $2+$3+$4+$7+$8; exit}' /proc/stat)
  start_run "$db" ingest sequences templates ${BENCH_ENV:-} AFTERCARE_KAFKA_BROKERS=$BROKERS AFTERCARE_KAFKA_TOPIC="$topic" AFTERCARE_KAFKA_GROUP="bench-$$"
  $lg wait-events --db "$db" --count "$EVENTS"
  cpu1=$(awk '/^cpu /{print $2+$3+$4+$7+$8; exit}' /proc/stat)
  stop_run
  psql -q -t "$db" -c "SELECT 'outbox rows written: ' || count(*) FROM outbox"
  echo "  the machine's CPU while ingesting: $(((cpu1 - cpu0) * 10000 / EVENTS)) us an event"
  psql -qtA "$db" -c "SELECT '  WAL: ' || pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') \
    || ' bytes, ' || (pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / $EVENTS)::int \
    || ' an event; checkpoints: ' \
    || ((SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) - $ck0)"
  psql -qtA -F ' ' "$db" -c "SELECT '  ' || relname, 'inserted', n_tup_ins, 'updated', n_tup_upd, \
    'HOT', n_tup_hot_upd, pg_size_pretty(pg_total_relation_size(relid)) \
    FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd > 100 ORDER BY relname"
  psql -qtA "$db" -c "SELECT '  average bytes: context ' \
    || (SELECT avg(length(context::text))::int FROM outbox) \
    || ', state ' || (SELECT avg(length(state::text))::int FROM enrollments) \
    || ', payload ' || (SELECT avg(length(payload::text))::int FROM events) \
    || ', journal ' || (SELECT avg(length(detail::text))::int FROM journal) \
    || ', profile ' || (SELECT avg(length(profile::text))::int FROM customers)"
fi

if [[ $what == all || $what == drain ]]; then
  echo "== scheduler: 1,000,000 pending enrollments, 100,000 due at once"
  db=$(fresh_db bench_drain)
  $lg seed --db "$db" --total 1000000 --due 100000
  # Write the seed out first, so the drain is not timed against its checkpoint.
  psql -q "$db" -c "CHECKPOINT"
  start_run "$db" schedule scripts/bench/sequences scripts/bench/templates
  $lg wait-drained --db "$db"
  stop_run
  psql -q -t "$db" -c "SELECT 'outbox rows: ' || count(*) FROM outbox"
fi

if [[ $what == all || $what == lag ]]; then
  echo "== scheduler: wake-up lag at a steady 1,000 due per second for 60 s (1,000,000 pending)"
  db=$(fresh_db bench_lag)
  $lg seed --db "$db" --total 1000000 --due 0 --steady 60000 --start-in 40
  start_run "$db" schedule scripts/bench/sequences scripts/bench/templates
  sleep 100
  stop_run
  $lg lag --db "$db"
fi
