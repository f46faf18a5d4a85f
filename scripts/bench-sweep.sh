#!/usr/bin/env bash
# A daily schedule trigger (win-back) swept over 1,000,000 customers on
# PostgreSQL (issue 11's target: at most 60 s). Seeds a fresh database with
# the customers (10% of them lapsed: last order 100 days ago), then times
# one firing's sweep: pages of profiles read without locks, `when` asked of
# each, the lapsed ones locked and enrolled (an email each).
#
#   scripts/bench-sweep.sh [CUSTOMERS] [LAPSED_PERCENT]
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${1:-1000000}
lapsed=${2:-10}
admin=${AFTERCARE_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
db=aftercare_bench_sweep
psql "$admin" -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db"
url="${admin%/*}/$db"
cargo build --release --example loadgen
lg=target/release/examples/loadgen
"$lg" seed-customers --db "$url" --total "$customers" --lapsed "$lapsed"
"$lg" sweep --db "$url"
psql "$admin" -qc "DROP DATABASE $db"
