#!/bin/bash
# bench.sh ROUNDS SECONDS MODES... : alternate modes per round; every run under flock; CPU from
# /usr/bin/time (user+sys, whole process) for all; requests from wrk output / client output.
# Output lines: round mode reqs rps cpu_us_per_req(time) [client-self-reported line]
R=${1:-5}; D=${2:-5}; shift 2; MODES=${@:-wrk epoll uring uring1 hybrid}
PORT=18181
for r in $(seq 1 $R); do for m in $MODES; do
  if [ $m = wrk ]; then
    out=$(flock /tmp/barfast-bench.lock /usr/bin/time -f "TIME %U %S %e" taskset -c 0 wrk -t1 -c50 -d${D}s http://127.0.0.1:$PORT/ 2>&1)
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    self=""
  else
    base=${m%%:*}; envs=""; [ "$m" != "$base" ] && envs=${m#*:}
    out=$(flock /tmp/barfast-bench.lock env $(echo $envs | tr ',' ' ') /usr/bin/time -f "TIME %U %S %e" taskset -c 0 ./client $base $PORT 50 $D 2>&1)
    reqs=$(echo "$out" | sed -n 's/.*reqs=\([0-9]*\).*/\1/p')
    self=$(echo "$out" | grep reqs= | sed 's/.*cpu_us_per_req/self_cpu/')
  fi
  read u s e <<< $(echo "$out" | awk '/^TIME/{print $2, $3, $4}')
  awk -v r=$r -v m=$m -v n=$reqs -v u=$u -v s=$s -v d=$D -v self="$self" 'BEGIN{printf "%d %-22s reqs=%d rps=%.0f cpu_us=%.3f  %s\n", r, m, n, n/d, (u+s)*1e6/n, self}'
done; done
