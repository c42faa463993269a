#!/usr/bin/env bash
# Starts a psrec cluster on this machine: one coordinator, S parameter servers and W workers as
# separate processes talking over tcp, trains, and stops. Everything after `--` (or any option this
# script does not know) is passed to the roles as training options (--data, --model, --epochs, ...).
#
#   launch/run.sh --servers 2 --workers 2 [--port 7750] [--host 127.0.0.1] [--logs DIR] [--bin PATH] \
#                 [--token-file FILE | --secure [--keys DIR] | --insecure] [--restart [--max-restarts N]] \
#                 -- --data shards --model model --epochs 5 \
#                 [--checkpoint-dir D --checkpoint-every 30s [--durability log]] [--resume D]
#
# The job gets a random id and a secret token (a fresh LOGS/token, mode 0600, or --token-file FILE),
# handed to every role as a file, never on a command line; --secure uses CURVE keys instead (--keys DIR,
# or fresh ones in LOGS/keys); --insecure turns connection checks off. See docs/security.md.
#
# Shows one combined progress line, keeps each process's log in --logs (default: a new directory under
# /tmp), exits non-zero if any role failed (naming it and showing the end of its log), and on Ctrl-C
# stops every process it started. With --restart (fault tolerance, docs/operations.md) a role that dies
# is started again with the same rank and port instead (up to --max-restarts times per role, default
# 20): it recovers from the checkpoint directory and the run goes on. --resume D continues a stopped
# run from its newest complete checkpoint round, with any number of workers.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
servers=1 workers=1 port=7750 host=127.0.0.1 logs="" bin="$here/build/psrec" quiet=0 security=token keys="" token=""
restart=0 max_restarts=20
train=()
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    --restart) restart=1; shift ;;
    --max-restarts) max_restarts=$2; shift 2 ;;
    --secure) security=curve; shift ;;
    --keys) keys=$2; shift 2 ;;
    --token-file) token=$2; shift 2 ;;
    --insecure) security=none; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; train+=("$@"); break ;;
    *) train+=("$1"); shift ;;
  esac
done
die() { echo "run.sh: $*" >&2; exit 2; }
[[ "$servers" =~ ^[0-9]+$ && "$servers" -ge 1 ]] || die "--servers must be a positive integer"
[[ "$workers" =~ ^[0-9]+$ && "$workers" -ge 1 ]] || die "--workers must be a positive integer"
[[ "$port" =~ ^[0-9]+$ && "$port" -ge 1 && "$port" -le $((65535 - servers)) ]] || die "--port must be in 1..$((65535 - servers))"
[[ "$max_restarts" =~ ^[0-9]+$ ]] || die "--max-restarts must be a non-negative integer"
[ -x "$bin" ] || die "psrec binary not found at $bin (build with launch/setup.sh, or pass --bin PATH)"
# a port in use is a clear error here rather than a confusing one from the coordinator
# (with --restart servers use the next ports: a restarted server must come back at the address workers know)
for ((p = port; p <= port + servers * restart; p++)); do
  if (exec 3<>"/dev/tcp/$host/$p") 2>/dev/null; then
    die "port $p on $host is already in use (choose another with --port; servers use --port+1..--port+$servers)"
  fi
done
[ -n "$logs" ] || logs=$(mktemp -d /tmp/psrec-run-XXXXXX)
mkdir -p "$logs" || die "cannot create log directory $logs"
job=$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ^ $$ ))
coord="tcp://$host:$port"
# the job's secrets: a fresh token (or CURVE keys) per job, passed to the roles as a file
case "$security" in
  token)
    [ -z "$keys" ] || die "--keys goes with --secure"
    if [ -z "$token" ]; then
      token="$logs/token"
      rm -f "$token"
      "$bin" keygen --token "$token" 2>/dev/null || die "cannot write the job token $token"
    fi
    sec=(--token-file "$token") ;;
  curve)
    [ -z "$token" ] || die "--token-file is the token mode; --secure uses --keys"
    if [ -z "$keys" ]; then
      keys="$logs/keys"
      rm -rf "$keys"
      "$bin" keygen --out "$keys" >/dev/null 2>&1 || die "cannot make CURVE keys in $keys (does this libzmq have CURVE? try: $bin keygen --out $keys)"
    fi
    sec=(--secure --keys "$keys") ;;
  none)
    [ -z "$token$keys" ] || die "--insecure takes neither --token-file nor --keys"
    sec=(--insecure) ;;
esac

pids=() names=()
declare -A restarts=()
# the command of a role, by name: coord, server-I, worker-I (the same after a restart)
role_cmd() {
  case "$1" in
    coord) cmd=("$bin" coord --bind "$coord" --servers "$servers" --workers "$workers" --job-id "$job" "${sec[@]}" "${train[@]}") ;;
    server-*) local i=${1#server-}
      # with --restart a server keeps its port, so a restarted one is where workers look for it
      local sp=0; [ "$restart" = 1 ] && sp=$((port + 1 + i))
      cmd=("$bin" server --coord "$coord" --bind "tcp://$host:$sp" --rank "$i" --job-id "$job" "${sec[@]}" "${train[@]}") ;;
    worker-*) local i=${1#worker-}
      cmd=("$bin" worker --coord "$coord" --threads 1 --rank "$i" --job-id "$job" --no-progress "${sec[@]}" "${train[@]}") ;;
  esac
}
start() { # name [slot to replace]
  local name=$1 slot=${2:-}
  role_cmd "$name"
  "${cmd[@]}" >> "$logs/$name.log" 2>&1 &
  if [ -n "$slot" ]; then pids[$slot]=$!; else pids+=($!); names+=("$name"); fi
}
progress_pid=""
stop_all() {
  for p in "${pids[@]}" $progress_pid; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}" $progress_pid; do wait "$p" 2>/dev/null; done
}
trap 'echo; echo "run.sh: interrupted, stopping ${#pids[@]} process(es)" >&2; stop_all; exit 130' INT TERM

start coord
for ((i = 0; i < servers; i++)); do start "server-$i"; done
for ((i = 0; i < workers; i++)); do start "worker-$i"; done
[ "$quiet" = 1 ] || echo "run.sh: job $job: coordinator $coord, $servers server(s), $workers worker(s); security: $security; logs in $logs" >&2

# the combined progress line, until the coordinator is gone
if [ "$quiet" = 0 ]; then
  # (status waits for the coordinator to come up: the first request is retried until its deadline)
  "$bin" status --coord "$coord" --job-id "$job" "${sec[@]}" --progress --timeout 5000 >/dev/null &
  progress_pid=$!
fi

# wait for every role; the first failure stops the others
failed=""
remaining=${#pids[@]}
while [ "$remaining" -gt 0 ]; do
  wait -n -p done_pid "${pids[@]}" 2>/dev/null
  rc=$?
  [ -n "${done_pid:-}" ] || break
  remaining=$((remaining - 1))
  for i in "${!pids[@]}"; do
    if [ "${pids[$i]}" = "$done_pid" ]; then
      name=${names[$i]}
      if [ "$rc" -ne 0 ] && [ "$restart" = 1 ] && [ "${restarts[$name]:-0}" -lt "$max_restarts" ]; then
        restarts[$name]=$(( ${restarts[$name]:-0} + 1 ))
        why="exit $rc"; [ "$rc" -gt 128 ] && why="signal $((rc - 128))"
        echo >&2
        echo "run.sh: $name died ($why); restarting it (${restarts[$name]}/$max_restarts)" >&2
        echo "run.sh: --- restart ${restarts[$name]} ($why) ---" >> "$logs/$name.log"
        start "$name" "$i"
        remaining=$((remaining + 1))
      elif [ "$rc" -ne 0 ] && [ -z "$failed" ]; then
        failed=${names[$i]}
        echo >&2
        echo "run.sh: $failed failed (exit $rc); its log ($logs/$failed.log) ends with:" >&2
        tail -n 5 "$logs/$failed.log" | sed 's/^/    /' >&2
        stop_all
        remaining=0
      fi
    fi
  done
  done_pid=""
done
if [ -n "$progress_pid" ]; then kill "$progress_pid" 2>/dev/null; wait "$progress_pid" 2>/dev/null; echo >&2; fi
if [ -n "$failed" ]; then exit 1; fi
[ "$quiet" = 1 ] || { grep -h "examples in" "$logs"/worker-*.log >&2; echo "run.sh: done; logs in $logs" >&2; }
exit 0
