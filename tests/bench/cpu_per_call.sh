#!/usr/bin/env bash
# Server CPU time (user + system, from /proc/PID/stat) and context switches (every
# thread's, voluntary and not, from /proc/PID/task/*/status) per call of one
# scenario: a fresh server and demo database, the rate limit off, 16 in flight for 6 s.
#
#   tests/bench/cpu_per_call.sh BIN baseline|check|submit [postgres|sqlite]
bin=$(realpath "$1"); scenario=$2; backend=${3:-postgres}
work=/tmp/cpu-bench; rm -rf $work; mkdir -p $work
root=$(cd "$(dirname "$0")/../.." && pwd)
loadgen=${CARGO_TARGET_DIR:-$root/target}/release/carepath-loadgen
if [ $backend = postgres ]; then
dropdb -h 127.0.0.1 -U postgres --if-exists carepath_bench 2>/dev/null; createdb -h 127.0.0.1 -U postgres carepath_bench
url='postgres://postgres@127.0.0.1:5432/carepath_bench?sslmode=disable'; key=(--signing-key $work/pg.key.pem); lurl="sqlite://$work/pg"
else url="sqlite://$work/bench.db"; key=(); lurl=$url; fi
$bin serve --demo --database-url "$url" "${key[@]}" --listen 127.0.0.1:50083 --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 > $work/server.log 2>&1 &
pid=$!
for i in $(seq 1 100); do grep -q listening $work/server.log && break; sleep 0.2; done
sleep 1
switches() { cat /proc/$pid/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s+=$2} END {print s}'; }
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
c0=$(switches)
out=$($loadgen --addr 127.0.0.1:50083 --database-url "$lurl" --concurrency 16 --seconds 6 --scenario $scenario | grep '^scenario=')
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
c1=$(switches)
calls=$(echo "$out" | sed -E 's/.*calls=([0-9]+).*/\1/')
rps=$(echo "$out" | sed -E 's/.* rps=([0-9]+).*/\1/')
tick=$(getconf CLK_TCK)
python3 -c "print(f'$(basename $bin) $scenario rps=$rps cpu_us_per_call={((($u1-$u0)+($s1-$s0))/$tick)/$calls*1e6:.1f} user_us={(($u1-$u0)/$tick)/$calls*1e6:.1f} switches_per_call={($c1-$c0)/$calls:.2f}')"
kill $pid; wait $pid 2>/dev/null
