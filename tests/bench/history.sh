#!/usr/bin/env bash
# Calls against a database that keeps history: for each size, a fresh database with
# the demo directory and SIZE precertification cases of the past three years
# (`carepath generate-history`), its size on disk per case, then a server
# (rate limit per caller off), its first retention sweep (timed), and GetCase, ListCases, the review queue,
# CheckRequirement and Submit, each closed-loop for a few seconds at a fixed number
# of calls in flight. One line per scenario: calls/s, p50, p99.
#
#   tests/bench/history.sh sqlite|postgres SIZES...
#       e.g. tests/bench/history.sh postgres 10000 100000 1000000
#
# Binaries from ${CARGO_TARGET_DIR:-target}/${CAREPATH_BENCH_PROFILE:-release}
# (cargo build --release -p carepath -p carepath-tests). PostgreSQL runs drop and
# create the database carepath_history on 127.0.0.1:5432. CAREPATH_BENCH_SECONDS
# (default 5) and CAREPATH_BENCH_CONCURRENCY (default 8) set each scenario's run.
set -euo pipefail

backend=${1:?usage: history.sh sqlite|postgres SIZES...}
shift
[ $# -gt 0 ] || { echo "usage: history.sh sqlite|postgres SIZES..." >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=${CARGO_TARGET_DIR:-$root/target}/${CAREPATH_BENCH_PROFILE:-release}
carepath=$bin_dir/carepath
loadgen=$bin_dir/carepath-loadgen
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-history}
addr=127.0.0.1:50083
seconds=${CAREPATH_BENCH_SECONDS:-5}
concurrency=${CAREPATH_BENCH_CONCURRENCY:-8}
pg_admin=(-h 127.0.0.1 -U postgres)

for size in "$@"; do
    rm -rf "$work" && mkdir -p "$work"
    key=()
    case "$backend" in
    sqlite)
        url="sqlite://$work/history.db"
        loadgen_url=$url
        ;;
    postgres)
        dropdb "${pg_admin[@]}" --if-exists carepath_history 2>/dev/null
        createdb "${pg_admin[@]}" carepath_history
        url='postgres://postgres@127.0.0.1:5432/carepath_history?sslmode=disable'
        key=(--signing-key "$work/pg.key.pem")
        loadgen_url="sqlite://$work/pg"
        ;;
    *) echo "unknown backend $backend (sqlite or postgres)" >&2; exit 2 ;;
    esac

    echo "$backend cases=$size $("$carepath" generate-history --demo --database-url "$url" --cases "$size" 2>/dev/null | head -1)"
    case "$backend" in
    sqlite)
        bytes=$(( $(stat -c %s "$work/history.db") + $(stat -c %s "$work/history.db-wal" 2>/dev/null || echo 0) ))
        ;;
    postgres)
        bytes=$(psql "${pg_admin[@]}" -d carepath_history -Atc "SELECT pg_database_size('carepath_history')")
        ;;
    esac
    echo "$backend cases=$size database_bytes=$bytes bytes_per_case=$(( bytes / size ))"

    "$carepath" serve --demo --database-url "$url" "${key[@]}" --listen "$addr" \
        --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 >"$work/server.log" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null' EXIT
    for _ in $(seq 1 300); do
        grep -q "listening" "$work/server.log" && break
        sleep 0.2
    done
    grep -q "listening" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
    # The generated history goes back years, so the server's first retention sweep
    # removes the old outbox deliveries and notice attempts a running plan would have
    # removed hour by hour. Calls are measured once it is done: the steady state.
    for _ in $(seq 1 3000); do
        grep -q "retention sweep done" "$work/server.log" && break
        sleep 0.2
    done
    grep -q "retention sweep done" "$work/server.log" || { echo "no retention sweep in 600 s" >&2; exit 1; }
    echo "$backend cases=$size first_retention_sweep: $(grep -o 'deliveries=.*' "$work/server.log" | head -1)"
    run=("$loadgen" --addr "$addr" --database-url "$loadgen_url" --concurrency "$concurrency" --seconds "$seconds")
    for scenario in get-case list-cases review-queue check submit; do
        echo "$backend cases=$size $("${run[@]}" --scenario "$scenario" | grep '^scenario=')"
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    trap - EXIT
done
