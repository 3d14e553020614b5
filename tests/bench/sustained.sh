#!/usr/bin/env bash
# Background work keeping pace: a fresh all-in-one server and database, an SMTP sink
# that keeps nothing (carepath-smtp-sink), Submit's capacity measured first (closed
# loop, 16 in flight, 10 s), then submissions offered at a share of it (default 70%)
# for a long run (default 600 s). Every 10 s one line: seconds into the run, the
# outbox deliveries waiting per consumer, the notices not yet sent, and the server's
# resident memory. After the run it waits (at most 180 s) for every delivery and
# notice to be done, then prints the maxima, dead rows, and the time from a
# submission's commit to each of its notices sent (p50, p99, max; submissions of the
# long run only).
#
#   tests/bench/sustained.sh sqlite|postgres
#       (after: cargo build --release -p carepath -p carepath-tests)
#
# CAREPATH_BENCH_SECONDS (default 600), CAREPATH_BENCH_SHARE (default 0.7) or
# CAREPATH_BENCH_RATE (submissions a second, skipping the capacity run).
# PostgreSQL runs drop and create the database carepath_sustained on 127.0.0.1:5432.
set -euo pipefail

backend=${1:?usage: sustained.sh sqlite|postgres}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-sustained}
addr=127.0.0.1:50084
smtp_port=2526
seconds=${CAREPATH_BENCH_SECONDS:-600}
share=${CAREPATH_BENCH_SHARE:-0.7}
rm -rf "$work" && mkdir -p "$work"

case "$backend" in
sqlite)
    server=(--database-url "sqlite://$work/sustained.db")
    loadgen_url="sqlite://$work/sustained.db"
    query() { sqlite3 -separator ' ' "$work/sustained.db" "$1" 2>/dev/null || echo busy; }
    # Seconds between two stored times (RFC 3339 text).
    seconds_between() { echo "(julianday($2) - julianday($1)) * 86400.0"; }
    not_before() { echo "julianday($1) >= julianday('$2')"; }
    ;;
postgres)
    dropdb -h 127.0.0.1 -U postgres --if-exists carepath_sustained 2>/dev/null
    createdb -h 127.0.0.1 -U postgres carepath_sustained
    server=(--database-url 'postgres://postgres@127.0.0.1:5432/carepath_sustained?sslmode=disable'
        --signing-key "$work/pg.key.pem")
    loadgen_url="sqlite://$work/pg"
    query() { psql -h 127.0.0.1 -U postgres -d carepath_sustained -F ' ' -Atc "$1" 2>/dev/null || echo busy; }
    seconds_between() { echo "extract(epoch from ($2 - $1))"; }
    not_before() { echo "$1 >= '$2'::timestamptz"; }
    # Production servers vacuum by themselves; a test server may not. Turn autovacuum
    # on for the run (the server's own setting comes back on exit).
    if [ "$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW autovacuum')" = off ]; then
        echo "PostgreSQL's autovacuum is off on this server: on for this run, as in production"
        psql -h 127.0.0.1 -U postgres -qAtc "ALTER SYSTEM SET autovacuum = on" -c "SELECT pg_reload_conf()" >/dev/null
        restore_autovacuum=1
    fi
    ;;
*) echo "unknown backend $backend (sqlite or postgres)" >&2; exit 2 ;;
esac

"$bin/carepath-smtp-sink" --listen "127.0.0.1:$smtp_port" --report-secs 0 &
sink=$!
"$bin/carepath" serve --demo "${server[@]}" --listen "$addr" --smtp-port "$smtp_port" \
    --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 \
    >"$work/server.log" 2>&1 &
srv=$!
cleanup() {
    kill $srv $sink 2>/dev/null
    if [ -n "${restore_autovacuum:-}" ]; then
        psql -h 127.0.0.1 -U postgres -qAtc "ALTER SYSTEM RESET autovacuum" -c "SELECT pg_reload_conf()" >/dev/null
    fi
}
trap cleanup EXIT
for _ in $(seq 1 150); do
    grep -q "listening" "$work/server.log" && break
    sleep 0.2
done
grep -q "listening" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
loadgen=("$bin/carepath-loadgen" --addr "$addr" --database-url "$loadgen_url" --scenario submit)

waiting_sql="SELECT consumer, count(*) FROM outbox_delivery
             WHERE done_at IS NULL AND dead_at IS NULL GROUP BY consumer ORDER BY consumer"
unsent_sql="SELECT count(*) FROM notice WHERE state IN ('pending', 'sending', 'failed')"
drained() {
    [ "$(query "SELECT count(*) FROM outbox_delivery WHERE done_at IS NULL AND dead_at IS NULL")" = 0 ] &&
        [ "$(query "$unsent_sql")" = 0 ]
}
# Waits until nothing is owed (the capacity run's work included), at most $1 seconds.
settle() {
    for _ in $(seq 1 "$1"); do
        drained && return 0
        sleep 1
    done
    return 1
}

if [ -n "${CAREPATH_BENCH_RATE:-}" ]; then
    rate=$CAREPATH_BENCH_RATE
else
    capacity=$("${loadgen[@]}" --concurrency 16 --seconds 10 | grep '^scenario=')
    echo "$backend capacity: $capacity"
    rps=$(sed -E 's/.* rps=([0-9]+).*/\1/' <<<"$capacity")
    rate=$(python3 -c "print(int($rps * $share))")
    settle 300 || echo "$backend the capacity run's background work was not done after 300 s"
fi
echo "$backend offered: $rate submissions a second for $seconds s"

"${loadgen[@]}" --rate "$rate" --concurrency 256 --seconds "$seconds" --health-interval-ms 0 \
    >"$work/loadgen.out" 2>&1 &
load=$!
start=$(date +%s)
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
max_unsent=0
max_waiting=0
rss_samples=()
sample() {
    local t=$(($(date +%s) - start)) waiting unsent rss total
    waiting=$(query "$waiting_sql" | tr '\n' ' ')
    unsent=$(query "$unsent_sql")
    rss=$(ps -o rss= -p "$srv" | tr -d ' ')
    total=$(awk '{ for (i = 2; i <= NF; i += 2) s += $i } END { print s + 0 }' <<<"$waiting")
    [ "$unsent" != busy ] && [ "$unsent" -gt "$max_unsent" ] && max_unsent=$unsent
    [ "$total" -gt "$max_waiting" ] && max_waiting=$total
    rss_samples+=("$rss")
    echo "t=${t}s waiting: ${waiting:-none} notices_unsent=$unsent rss_kb=$rss"
}
while kill -0 "$load" 2>/dev/null; do
    sleep 10
    sample
done
wait "$load" || true
grep -E '^(scenario|refused|offered)' "$work/loadgen.out"
echo "$backend run over; waiting for the backlog to drain"
end=$(date +%s)
drained_after=none
for _ in $(seq 1 180); do
    if drained; then
        drained_after=$(($(date +%s) - end))s
        break
    fi
    sleep 1
done
sample
echo "$backend max_waiting_deliveries=$max_waiting max_notices_unsent=$max_unsent drained_after=$drained_after"
echo "$backend rss_kb first=${rss_samples[0]} max=$(printf '%s\n' "${rss_samples[@]}" | sort -n | tail -1) last=${rss_samples[-1]}"
echo "$backend dead: deliveries=$(query "SELECT count(*) FROM outbox_delivery WHERE dead_at IS NOT NULL") notices=$(query "SELECT count(*) FROM notice WHERE state = 'dead' AND channel <> 'none'")"
latency=$(seconds_between e.occurred_at n.sent_at)
query "SELECT $latency FROM notice n JOIN outbox_event e ON e.id = n.event_id
       WHERE n.sent_at IS NOT NULL AND $(not_before e.occurred_at "$since") ORDER BY 1" >"$work/latency.txt"
python3 - "$work/latency.txt" "$backend" <<'EOF'
import sys
values = sorted(float(v) for v in open(sys.argv[1]) if v.strip() and v.strip() != "busy")
def pct(p):
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")
print(f"{sys.argv[2]} commit_to_notice_sent notices={len(values)} "
      f"p50_s={pct(0.5):.3f} p99_s={pct(0.99):.3f} max_s={pct(1.0):.3f}")
EOF
