#!/usr/bin/env bash
# Instructions the server executes per call of one scenario (callgrind, all its
# threads, background work included), counted only while the load runs: a fresh
# server on its own database (PostgreSQL by default; CAREPATH_BENCH_BACKEND=sqlite for
# the embedded one, whose work is then all in the server process), 4 calls in flight
# for 15 s. Repeatable on a noisy machine, unlike calls per second.
#
#   tests/bench/instructions_per_call.sh BIN check|submit|baseline TAG [PORT_DIGIT]
set -uo pipefail
bin=$(realpath "$1"); scenario=$2; tag=$3; port=5009${4:-0}
work=/tmp/cg-$tag; rm -rf $work; mkdir -p $work
root=$(cd "$(dirname "$0")/../.." && pwd)
loadgen=${CARGO_TARGET_DIR:-$root/target}/release/carepath-loadgen
if [ "${CAREPATH_BENCH_BACKEND:-postgres}" = sqlite ]; then
    url="sqlite://$work/cg.db"
else
    dropdb -h 127.0.0.1 -U postgres --if-exists cg_$tag 2>/dev/null; createdb -h 127.0.0.1 -U postgres cg_$tag
    url="postgres://postgres@127.0.0.1:5432/cg_$tag?sslmode=disable"
fi
cd $work
valgrind --tool=callgrind --callgrind-out-file=$work/cg.out --instr-atstart=no $bin serve --demo --database-url "$url" --signing-key $work/pg.key.pem --listen 127.0.0.1:$port --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 > $work/server.log 2>&1 &
pid=$!
for i in $(seq 1 600); do grep -q listening $work/server.log && break; sleep 0.5; done
sleep 2
vpid=$(pgrep -f "callgrind-out-file=$work/cg.out" | head -1)
callgrind_control -i on $vpid >/dev/null
out=$($loadgen --addr 127.0.0.1:$port --database-url "sqlite://$work/pg" --concurrency 4 --seconds 15 --scenario $scenario 2>&1 | tee $work/loadgen.log | grep '^scenario=')
callgrind_control -i off $vpid >/dev/null
callgrind_control -d $vpid >/dev/null
sleep 1
kill $pid; wait $pid 2>/dev/null
calls=$(echo "$out" | sed -E 's/.*calls=([0-9]+).*/\1/')
ir=$(for f in $work/cg.out*; do grep -E "^(summary|totals):" $f; done | awk '{s+=$2} END {print s}')
errors=$(echo "$out" | sed -E 's/.*errors=([0-9]+).*/\1/')
[ "$errors" = 0 ] || { echo "$tag: $errors calls failed; see $work/server.log" >&2; exit 1; }
echo "$tag $scenario calls=$calls Ir=$ir Ir_per_call=$((ir / calls))"
