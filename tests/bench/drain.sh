#!/usr/bin/env bash
# The notifier's backlog benchmark of BENCHMARKS.md: a fresh all-in-one server and
# database, an SMTP sink (aiosmtpd) on port 2525, Submit for 20 s at 32 in flight, then
# the notifier's outbox deliveries counted every 2 s until none is waiting.
#
#   tests/bench/drain.sh sqlite|postgres     (after: cargo build --release -p carepath -p carepath-tests)
#
# Prints the Submit line, then one line per count: seconds since the load stopped,
# notifier deliveries still waiting, and notices not yet sent. Emails wait on the
# Python sink (tens a second), so "not yet sent" stays high; portal notices go at once.
# PostgreSQL runs drop and create the database carepath_drain on 127.0.0.1:5432.
set -euo pipefail

backend=${1:?usage: drain.sh sqlite|postgres}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-drain}
addr=127.0.0.1:50083
rm -rf "$work" && mkdir -p "$work"

case "$backend" in
sqlite)
    server=(--database-url "sqlite://$work/drain.db")
    loadgen_url="sqlite://$work/drain.db"
    count() { sqlite3 "$work/drain.db" "$1" 2>/dev/null || echo busy; }
    ;;
postgres)
    dropdb -h 127.0.0.1 -U postgres --if-exists carepath_drain 2>/dev/null
    createdb -h 127.0.0.1 -U postgres carepath_drain
    server=(--database-url 'postgres://postgres@127.0.0.1:5432/carepath_drain?sslmode=disable'
        --signing-key "$work/pg.key.pem")
    loadgen_url="sqlite://$work/pg"
    count() { psql -h 127.0.0.1 -U postgres -d carepath_drain -Atc "$1" 2>/dev/null || echo busy; }
    ;;
*) echo "unknown backend $backend (sqlite or postgres)" >&2; exit 2 ;;
esac

python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet aiosmtpd
python3 -m aiosmtpd -n -l 127.0.0.1:2525 >/dev/null 2>&1 &
smtp=$!
"$bin/carepath" serve --demo "${server[@]}" --listen "$addr" --smtp-port 2525 >"$work/server.log" 2>&1 &
srv=$!
trap 'kill $srv $smtp 2>/dev/null' EXIT
for _ in $(seq 1 150); do
    grep -q "listening" "$work/server.log" && break
    sleep 0.2
done
grep -q "listening" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }

"$bin/carepath-loadgen" --addr "$addr" --database-url "$loadgen_url" \
    --scenario submit --concurrency 32 --seconds 20 | grep '^scenario='
start=$(date +%s.%N)
while :; do
    waiting=$(count "SELECT count(*) FROM outbox_delivery WHERE consumer = 'notify' AND done_at IS NULL AND dead_at IS NULL")
    unsent=$(count "SELECT count(*) FROM notice WHERE state IN ('pending', 'sending')")
    echo "t+$(python3 -c "import time; print(round(time.time() - $start, 1))")s notifier waiting=$waiting notices unsent=$unsent"
    [ "$waiting" = 0 ] && break
    sleep 2
done
