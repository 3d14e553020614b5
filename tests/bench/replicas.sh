#!/usr/bin/env bash
# The replicas benchmark of BENCHMARKS.md, on PostgreSQL (a fresh database
# carepath_bench on 127.0.0.1:5432 per run):
#
#   1. submissions per second with 1, 2 and 3 `carepath serve` replicas on one database:
#      48 submissions in flight in all, split evenly over one load generator per
#      replica, 8 s; the figure is the sum of the load generators' rates;
#   2. time from commit to notice sent (the event's time to the notice's `sent_at`,
#      read from the database), idle (2 submissions a second, 10 s) and under load
#      (32 in flight, 8 s, then until every notice is sent), on two replicas (calls to
#      the first), with LISTEN/NOTIFY and without it (--database-notifications false,
#      and the sessions' triggers silenced with carepath.notify=off).
#
#   tests/bench/replicas.sh        (after: cargo build --release -p carepath -p carepath-tests;
#                                   CAREPATH_BENCH_PROFILE=debug runs the debug build)
#
# Emails go to an SMTP sink (Python aiosmtpd) on 127.0.0.1:2525.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/${CAREPATH_BENCH_PROFILE:-release}
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-bench-replicas}
db=carepath_bench
base_url="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

gauge() {
    python3 -c 'import time
t = time.time(); s = 0
for i in range(10_000_000): s += i * i
print(f"machine gauge: {time.time() - t:.2f} s")'
}

fresh() {
    cleanup
    pids=()
    rm -rf "$work" && mkdir -p "$work"
    dropdb -h 127.0.0.1 -U postgres --if-exists "$db" 2>/dev/null
    createdb -h 127.0.0.1 -U postgres "$db"
    python3 -m aiosmtpd -n -c aiosmtpd.handlers.Sink -l 127.0.0.1:2525 &
    pids+=($!)
}

# serve INDEX URL [flags...]: replica INDEX on port 50081+INDEX (metrics on 9471+INDEX), the
# first with the demo.
serve() {
    local index=$1 url=$2
    shift 2
    local demo=()
    [ "$index" = 0 ] && demo=(--demo)
    "$bin/carepath" serve "${demo[@]}" --database-url "$url" --signing-key "$work/pg.key.pem" \
        --listen "127.0.0.1:$((50081 + index))" --fhir-listen "127.0.0.1:$((8081 + index))" \
        --metrics-listen "127.0.0.1:$((9471 + index))" \
        --smtp-port 2525 --records-dir "$work/records" --print-batch-dir "$work/print-$index" \
        --max-calls-per-caller 1024 --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 "$@" >"$work/server-$index.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 150); do
        grep -q "carepath listening" "$work/server-$index.log" && return
        sleep 0.2
    done
    cat "$work/server-$index.log" >&2
    exit 1
}

loadgen() {
    local index=$1
    shift
    "$bin/carepath-loadgen" --addr "127.0.0.1:$((50081 + index))" --database-url "sqlite://$work/pg" "$@"
}

sql() {
    psql -h 127.0.0.1 -U postgres -d "$db" -Atc "$1"
}

# Commit-to-sent percentiles of the notices made since $1 (an outbox sequence number).
delays() {
    sql "SELECT count(*) || ' notices: p50 ' ||
            round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::text || ' ms, p90 ' ||
            round(1000 * percentile_cont(0.9) WITHIN GROUP (ORDER BY d))::text || ' ms, max ' ||
            round(1000 * max(d))::text || ' ms'
         FROM (SELECT extract(epoch FROM n.sent_at - e.occurred_at) AS d
               FROM notice n JOIN outbox_event e ON e.id = n.event_id
               WHERE e.seq > $1 AND n.state = 'sent') x"
}

drained() {
    for _ in $(seq 1 600); do
        [ "$(sql "SELECT count(*) FROM notice WHERE state <> 'sent'")" = 0 ] &&
            [ "$(sql "SELECT count(*) FROM outbox_delivery WHERE done_at IS NULL AND dead_at IS NULL")" = 0 ] &&
            return
        sleep 0.2
    done
    echo "notices not drained" >&2
}

gauge
echo "== throughput $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
for replicas in 1 2 3; do
    fresh
    for index in $(seq 0 $((replicas - 1))); do serve "$index" "$base_url"; done
    per=$((48 / replicas))
    generators=()
    for index in $(seq 0 $((replicas - 1))); do
        loadgen "$index" --scenario submit --concurrency "$per" --seconds 8 >"$work/load-$index.out" &
        generators+=($!)
    done
    wait "${generators[@]}"
    total=$(grep -h '^scenario=' "$work"/load-*.out | sed -E 's/.* rps=([0-9]+).*/\1/' | awk '{s += $1} END {print s}')
    echo "replicas=$replicas in_flight=48 rps=$total"
    grep -h '^scenario=' "$work"/load-*.out | sed 's/^/    /'
done

for mode in notify poll; do
    fresh
    url=$base_url
    flags=()
    if [ "$mode" = poll ]; then
        url="$base_url&options=-c%20carepath.notify%3Doff"
        flags=(--database-notifications false)
    fi
    serve 0 "$url" "${flags[@]}"
    serve 1 "$url" "${flags[@]}"
    echo "== commit to notice sent, $mode, two replicas $(date -u +%H:%M:%S)"
    # A first submission warms both replicas up.
    loadgen 0 --scenario submit --rate 2 --concurrency 4 --seconds 2 >/dev/null
    drained
    from=$(sql "SELECT coalesce(max(seq), 0) FROM outbox_event")
    loadgen 0 --scenario submit --rate 2 --concurrency 4 --seconds 10 | grep '^scenario=' | sed 's/^/    /'
    drained
    echo "idle: $(delays "$from")"
    from=$(sql "SELECT coalesce(max(seq), 0) FROM outbox_event")
    loadgen 0 --scenario submit --concurrency 32 --seconds 8 | grep '^scenario=' | sed 's/^/    /'
    drained
    echo "under load: $(delays "$from")"
done
gauge
