#!/usr/bin/env bash
# The Submit benchmark of BENCHMARKS.md: for each run, a fresh all-in-one server and
# demo database, then the baseline (GetPlan) 5 s, Submit at 32 in flight 8 s, and
# Submit at 1,000 a second offered 10 s, against the same server.
#
#   tests/bench/submit.sh sqlite|postgres [runs]     (after: cargo build --release -p carepath -p carepath-tests)
#
# Extra server flags come from CAREPATH_BENCH_SERVE_FLAGS (e.g. "--rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64").
# PostgreSQL runs drop and create the database carepath_bench on 127.0.0.1:5432.
set -euo pipefail

backend=${1:?usage: submit.sh sqlite|postgres [runs]}
runs=${2:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-bench}
addr=127.0.0.1:50081
read -r -a extra <<<"${CAREPATH_BENCH_SERVE_FLAGS:-}"

gauge() {
    python3 -c 'import time
t = time.time(); s = 0
for i in range(10_000_000): s += i * i
print(f"machine gauge: {time.time() - t:.2f} s")'
}

one_run() {
    rm -rf "$work" && mkdir -p "$work"
    local server_url loadgen_url key=()
    case "$backend" in
    sqlite)
        server_url="sqlite://$work/bench.db"
        loadgen_url=$server_url
        ;;
    postgres)
        dropdb -h 127.0.0.1 -U postgres --if-exists carepath_bench 2>/dev/null
        createdb -h 127.0.0.1 -U postgres carepath_bench
        server_url='postgres://postgres@127.0.0.1:5432/carepath_bench?sslmode=disable'
        key=(--signing-key "$work/pg.key.pem")
        loadgen_url="sqlite://$work/pg"
        ;;
    *) echo "unknown backend $backend (sqlite or postgres)" >&2; exit 2 ;;
    esac
    "$bin/carepath" serve --demo --database-url "$server_url" "${key[@]}" --listen "$addr" \
        "${extra[@]}" >"$work/server.log" 2>&1 &
    local server=$!
    trap 'kill $server 2>/dev/null' EXIT
    for _ in $(seq 1 150); do
        grep -q "listening" "$work/server.log" && break
        sleep 0.2
    done
    grep -q "listening" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
    local loadgen=("$bin/carepath-loadgen" --addr "$addr" --database-url "$loadgen_url")
    echo "== $backend $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
    "${loadgen[@]}" --scenario baseline --concurrency 32 --seconds 5 | grep '^scenario='
    "${loadgen[@]}" --scenario submit --concurrency 32 --seconds 8 | grep '^scenario='
    "${loadgen[@]}" --scenario submit --rate 1000 --concurrency 4096 --seconds 10 | grep '^scenario='
    kill "$server"
    wait "$server" 2>/dev/null || true
    trap - EXIT
}

gauge
for _ in $(seq 1 "$runs"); do
    one_run
done
gauge
