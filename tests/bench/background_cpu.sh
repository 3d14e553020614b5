#!/usr/bin/env bash
# What a submission costs after its call: a fresh server and SQLite demo database
# (emails to carepath-smtp-sink), Submit closed-loop at 16 in flight for 6 s, then a
# wait until every outbox delivery and notice is done. Prints the server's CPU time
# (user + system, /proc/PID/stat) per submission during the run and during the drain
# that follows, and how long the drain took.
#
#   tests/bench/background_cpu.sh BIN
#       (after: cargo build --release -p carepath -p carepath-tests)
set -euo pipefail
bin=$(realpath "${1:?usage: background_cpu.sh BIN}")
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=${CARGO_TARGET_DIR:-$root/target}/release
work=${CAREPATH_BENCH_DIR:-/tmp/carepath-background-cpu}
addr=127.0.0.1:50086
smtp_port=2527
rm -rf "$work" && mkdir -p "$work"
db="$work/bench.db"
"$tools/carepath-smtp-sink" --listen "127.0.0.1:$smtp_port" --report-secs 0 >/dev/null &
sink=$!
"$bin" serve --demo --database-url "sqlite://$db" --listen "$addr" --smtp-port "$smtp_port" \
    --rate-limit-per-caller 0 --rate-limit-per-person 0 --max-calls-per-caller 64 \
    >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid $sink 2>/dev/null' EXIT
for _ in $(seq 1 150); do grep -q listening "$work/server.log" && break; sleep 0.2; done
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu)
out=$("$tools/carepath-loadgen" --addr "$addr" --database-url "sqlite://$db" \
    --concurrency 16 --seconds 6 --scenario submit | grep '^scenario=')
c1=$(cpu)
t0=$(date +%s.%N)
left=unknown
for _ in $(seq 1 240); do
    left=$(sqlite3 "$db" "SELECT (SELECT COUNT(*) FROM outbox_delivery
        WHERE done_at IS NULL AND dead_at IS NULL) + (SELECT COUNT(*) FROM notice
        WHERE state IN ('pending', 'sending', 'failed'))" 2>/dev/null || echo busy)
    [ "$left" = 0 ] && break
    sleep 0.5
done
c2=$(cpu)
t1=$(date +%s.%N)
calls=$(echo "$out" | sed -E 's/.*calls=([0-9]+).*/\1/')
echo "$out"
python3 -c "
t = $(getconf CLK_TCK)
print(f'$(basename "$bin") run_cpu_us_per_submission={($c1 - $c0) / t / $calls * 1e6:.0f}' +
      f' drain_cpu_us_per_submission={($c2 - $c1) / t / $calls * 1e6:.0f}' +
      f' drain_s={$t1 - $t0:.1f} left=$left')"
