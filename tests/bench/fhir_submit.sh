#!/usr/bin/env bash
# The same MRI submitted through both doors of one server: for each run, a fresh
# all-in-one server (gRPC and FHIR API) and demo database, a FHIR client registered for
# the demo imaging centre, then gRPC Submit and FHIR Claim/$submit closed-loop at 16 in
# flight, then each open-loop at a fixed offered rate (as tests/bench/submit.sh does),
# with the per-caller rate limit off. The door that goes first alternates run by run.
# One line per measurement: the load generator's figures and refusals, and for the
# closed loop the CPU time (user + system) per call of the server (from /proc/PID/stat)
# and of the load generator, which shares the machine with it.
#
#   tests/bench/fhir_submit.sh sqlite|postgres [runs [GRPC_SCENARIO FHIR_SCENARIO]]
#       (after: cargo build --release -p carepath -p carepath-tests)
#
# The pair compared is gRPC `submit` and FHIR `fhir-submit` unless named: `check
# crd-order-sign` compares gRPC CheckRequirement with the CDS Hooks order-sign call.
#
# CAREPATH_BENCH_SECONDS (default 8): length of each closed-loop measurement;
# CAREPATH_BENCH_RATES (default "1000 500"): the offered rates, 10 s each (1,000 as in
# submit.sh; 500, below either door's capacity at 16 in flight on this machine).
# PostgreSQL runs drop and create the database carepath_bench on 127.0.0.1:5432.
set -euo pipefail

backend=${1:?usage: fhir_submit.sh sqlite|postgres [runs [GRPC_SCENARIO FHIR_SCENARIO]]}
runs=${2:-3}
grpc_scenario=${3:-submit}
fhir_scenario=${4:-fhir-submit}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-fhir-bench}
addr=127.0.0.1:50084
fhir_addr=127.0.0.1:8084
seconds=${CAREPATH_BENCH_SECONDS:-8}
read -r -a rates <<<"${CAREPATH_BENCH_RATES:-1000 500}"
client=bench-client

# User + system CPU ticks of process $1 so far.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# The load generator's figures and refusals on one line.
figures() {
    grep -E '^(scenario|refused)' | tr '\n' ' ' | sed 's/ $//'
}

gauge() {
    python3 -c 'import time
t = time.time(); s = 0
for i in range(10_000_000): s += i * i
print(f"machine gauge: {time.time() - t:.2f} s")'
}

one_run() {
    local n=$1
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
        --fhir-listen "$fhir_addr" --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 >"$work/server.log" 2>&1 &
    local server=$!
    trap 'kill $server 2>/dev/null' EXIT
    for _ in $(seq 1 150); do
        grep -q "carepath listening" "$work/server.log" &&
            grep -q "carepath FHIR API listening" "$work/server.log" && break
        sleep 0.2
    done
    grep -q "carepath FHIR API listening" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
    "$bin/carepath" fhir-client keygen --client-id "$client" --out "$work/keys" >/dev/null
    "$bin/carepath" fhir-client register --database-url "$server_url" --client-id "$client" \
        --name "load generator" --npi 1184649790 --jwks "$work/keys/$client.jwks.json" >/dev/null
    local loadgen=("$bin/carepath-loadgen" --addr "$addr" --database-url "$loadgen_url"
        --fhir-addr "$fhir_addr" --fhir-client-id "$client" --fhir-key "$work/keys/$client.key.pem")
    local doors=("$grpc_scenario" "$fhir_scenario")
    if ((n % 2 == 0)); then doors=("$fhir_scenario" "$grpc_scenario"); fi
    echo "== $backend run $n $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
    local tick line before calls client
    tick=$(getconf CLK_TCK)
    for scenario in "${doors[@]}"; do
        before=$(cpu_ticks "$server")
        # bash's time: the load generator's user and system CPU seconds.
        client=$({ TIMEFORMAT='%U %S'; time "${loadgen[@]}" --scenario "$scenario" \
            --concurrency 16 --seconds "$seconds" >"$work/loadgen.out"; } 2>&1 | tail -1)
        line=$(figures <"$work/loadgen.out")
        calls=$(sed -E 's/.* calls=([0-9]+).*/\1/' <<<"$line")
        calls=$((calls > 0 ? calls : 1))
        echo "$backend run=$n closed16 $line server_cpu_us_per_call=$((
            ($(cpu_ticks "$server") - before) * 1000000 / tick / calls)) client_cpu_us_per_call=$(
            awk -v c="$calls" '{printf "%.0f", ($1 + $2) * 1000000 / c}' <<<"$client")"
    done
    for rate in "${rates[@]}"; do
        for scenario in "${doors[@]}"; do
            echo "$backend run=$n rate$rate $("${loadgen[@]}" --scenario "$scenario" \
                --rate "$rate" --concurrency 4096 --seconds 10 | figures)"
        done
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    trap - EXIT
}

gauge
for n in $(seq 1 "$runs"); do
    one_run "$n"
done
gauge
