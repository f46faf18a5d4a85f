#!/usr/bin/env bash
# Times `aftercare simulate` over a generated events file (default: 100,000
# events from 10,000 customers). Target (issue 6): <= 5 s wall, <= 150 MB.
#
#   scripts/bench-simulate.sh                 # 10,000 customers, 100,000 events, seed 1
#   CUSTOMERS=1000 EVENTS=10000 scripts/bench-simulate.sh
#
# Honours CARGO_TARGET_DIR (default: ./target). The events file is generated
# into /tmp once per (customers, events, seed) and reused afterwards.
# Prints /usr/bin/time -v's report; the lines that matter are
# "Elapsed (wall clock) time" and "Maximum resident set size".
set -euo pipefail

cd "$(dirname "$0")/.."

CUSTOMERS="${CUSTOMERS:-10000}"
EVENTS="${EVENTS:-100000}"
SEED="${SEED:-1}"
FILE="${EVENTS_FILE:-/tmp/aftercare-events-c${CUSTOMERS}-e${EVENTS}-s${SEED}.jsonl}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release/aftercare"

cargo build --release

if [[ ! -s "$FILE" ]]; then
    python3 scripts/gen-events.py --customers "$CUSTOMERS" --events "$EVENTS" \
        --seed "$SEED" --out "$FILE"
fi

if [[ ! -x /usr/bin/time ]]; then
    echo "/usr/bin/time is missing (Debian/Ubuntu: apt-get install time)" >&2
    exit 1
fi

echo "== $BIN simulate --events $FILE > /dev/null" >&2
echo "== $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >&2
/usr/bin/time -v "$BIN" simulate --events "$FILE" > /dev/null
