#!/usr/bin/env bash
# Runs a command and prints where its CPU went: each of its threads (user +
# system, sampled every 0.2 s from /proc while it runs), and the CPU that the
# local mariadbd spent meanwhile (PostgreSQL's backends end with their
# connections, taking their counts with them, so they are not shown).
#   scripts/thread-cpu.sh target/release/puente --config puente.toml sync
set -u
tick=$(getconf CLK_TCK)
server_cpu() { # utime + stime of the processes named $1, in ticks
  local t=0 p s
  for p in $(pgrep -x "$1"); do
    s=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null)
    t=$((t + ${s:-0}))
  done
  echo "$t"
}
secs() { awk -v t="$1" -v k="$tick" 'BEGIN { printf "%.2f", t / k }'; }
m0=$(server_cpu mariadbd)
start=$(date +%s.%N)
"$@" > /dev/null &
pid=$!
declare -A cpu
while kill -0 "$pid" 2>/dev/null; do
  for t in /proc/"$pid"/task/*; do
    line=$(cat "$t/stat" 2>/dev/null) || continue
    name=$(cat "$t/comm" 2>/dev/null)
    set -- ${line##*) }
    cpu["$(basename "$t") $name"]=$(( ${12} + ${13} ))
  done
  sleep 0.2
done
wait "$pid"; rc=$?
end=$(date +%s.%N)
echo "exit $rc, wall $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s"
for k in "${!cpu[@]}"; do
  [ "${cpu[$k]}" -gt 5 ] && echo "  thread $k: $(secs "${cpu[$k]}") s"
done
echo "  mariadbd $(secs $(( $(server_cpu mariadbd) - m0 ))) s"
