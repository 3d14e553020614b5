#!/usr/bin/env bash
# Two builds of the all-in-one server side by side: for each run and each build, a
# fresh server and demo database, then GetPlan (the baseline), CheckRequirement and
# Submit, each closed-loop at 16 calls in flight, with the per-caller rate limit off
# so nothing caps the baseline. Builds alternate run by run, so both meet the same
# machine.
#
#   tests/bench/compare.sh sqlite|postgres BIN_A BIN_B [runs]
#       (carepath-loadgen from: cargo build --release -p carepath-tests)
#
# PostgreSQL runs drop and create the database carepath_bench on 127.0.0.1:5432.
set -euo pipefail

backend=${1:?usage: compare.sh sqlite|postgres BIN_A BIN_B [runs]}
bin_a=${2:?path of the first carepath binary}
bin_b=${3:?path of the second carepath binary}
runs=${4:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
loadgen=${CARGO_TARGET_DIR:-$root/target}/release/carepath-loadgen
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-compare}
addr=127.0.0.1:50082
seconds=${CAREPATH_BENCH_SECONDS:-8}

one_run() {
    local label=$1 bin=$2
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
    "$bin" serve --demo --database-url "$server_url" "${key[@]}" --listen "$addr" \
        --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 >"$work/server.log" 2>&1 &
    local server=$!
    trap 'kill $server 2>/dev/null' EXIT
    for _ in $(seq 1 150); do
        grep -q "listening" "$work/server.log" && break
        sleep 0.2
    done
    grep -q "listening" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
    local run=("$loadgen" --addr "$addr" --database-url "$loadgen_url" --concurrency 16 --seconds "$seconds")
    for scenario in baseline check submit; do
        echo "$backend $label $("${run[@]}" --scenario "$scenario" | grep '^scenario=')"
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    trap - EXIT
}

for _ in $(seq 1 "$runs"); do
    one_run A "$bin_a"
    one_run B "$bin_b"
done
