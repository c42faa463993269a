#!/usr/bin/env bash
# Starts a psrec cluster: one coordinator, S parameter servers and W workers as separate processes
# talking over tcp, trains, and stops. On this machine by default; on hosts reached by ssh with
# --hosts FILE; as Slurm job steps with --slurm (docs/cluster.md). Everything after `--` (or any option
# this script does not know) is passed to the roles as training options (--data, --model, ...).
#
#   launch/run.sh --servers 2 --workers 2 [--port 7750] [--host 127.0.0.1] [--logs DIR] [--bin PATH] \
#                 [--token-file FILE | --secure [--keys DIR] | --insecure] [--restart [--max-restarts N]] \
#                 -- --data shards --model model --epochs 5 [--max-rows N --at-max-rows skip|fail] \
#                 [--checkpoint-dir D --checkpoint-every 30s [--durability log]] [--resume D]
#   launch/run.sh --hosts FILE [--ssh "ssh -i KEY ..."] [--remote-bin PATH | --copy-bin] [--remote-dir DIR]
#                 [--host-timeout S] [--reconnect-timeout S] [same options as above] -- [training options]
#   salloc -N3 -n7 launch/run.sh --slurm [--servers S] [--workers W] [--copy-bin] ... -- [training options]
#
# The job gets a random id and a secret token (a fresh LOGS/token, mode 0600, or --token-file FILE),
# handed to every role as a file, never on a command line; --secure uses CURVE keys instead (--keys DIR,
# or fresh ones in LOGS/keys); --insecure turns connection checks off. See docs/security.md. With
# --hosts the secrets are copied through ssh into a private directory on each host, deleted at the end.
#
# Shows one combined progress line, keeps each process's log in --logs (default: a new directory under
# /tmp; with --slurm ./psrec-logs-JOBID), exits non-zero if any role failed (naming it and showing the
# end of its log), and on Ctrl-C stops every process it started. With --restart (fault tolerance,
# docs/operations.md) a role that dies is started again with the same rank and port instead (up to
# --max-restarts times per role, default 20): it recovers from the checkpoint directory and the run goes
# on; with --hosts a role whose host stopped answering (--host-timeout, default 15 s) is started again
# there once ssh reaches it (--reconnect-timeout, default 300 s). --resume D continues a stopped run from
# its newest complete checkpoint round, with any number of workers.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
servers=1 workers=1 port=7750 host=127.0.0.1 logs="" bin="$here/build/psrec" quiet=0 security=token keys="" token=""
restart=0 max_restarts=20 servers_set=0 workers_set=0 host_set=0
mode=local hostfile="" ssh_cmd=${PSREC_SSH:-ssh} remote_bin="" copy_bin=0 remote_dir="" host_timeout=15
reconnect_timeout=300
declare -i modes=0
train=()
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; servers_set=1; shift 2 ;;
    --workers) workers=$2; workers_set=1; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --host) host=$2; host_set=1; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    --restart) restart=1; shift ;;
    --max-restarts) max_restarts=$2; shift 2 ;;
    --secure) security=curve; shift ;;
    --keys) keys=$2; shift 2 ;;
    --token-file) token=$2; shift 2 ;;
    --insecure) security=none; shift ;;
    --hosts) mode=hosts; hostfile=$2; modes+=1; shift 2 ;;
    --slurm) mode=slurm; modes+=1; shift ;;
    --ssh) ssh_cmd=$2; shift 2 ;;
    --remote-bin) remote_bin=$2; shift 2 ;;
    --copy-bin) copy_bin=1; shift ;;
    --remote-dir) remote_dir=$2; shift 2 ;;
    --host-timeout) host_timeout=$2; shift 2 ;;
    --reconnect-timeout) reconnect_timeout=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; train+=("$@"); break ;;
    *) train+=("$1"); shift ;;
  esac
done
die() { echo "run.sh: $*" >&2; exit 2; }
# the servers' own limits (docs/security.md, docs/scaling.md) go to the servers only
srv=() rest=()
for ((a = 0; a < ${#train[@]}; a++)); do
  case "${train[a]}" in
    --max-msg-mb|--max-inflight|--max-new-rows|--max-rows|--at-max-rows)
      [ $((a + 1)) -lt ${#train[@]} ] || die "${train[a]} needs a value"
      [ "${train[a]}" != --at-max-rows ] || [[ "${train[a + 1]}" =~ ^(skip|fail)$ ]] ||
        die "--at-max-rows: want skip or fail, not '${train[a + 1]}'"
      srv+=("${train[a]}" "${train[a + 1]}"); a=$((a + 1)) ;;
    --max-msg-mb=*|--max-inflight=*|--max-new-rows=*|--max-rows=*|--at-max-rows=*) srv+=("${train[a]}") ;;
    *) rest+=("${train[a]}") ;;
  esac
done
train=("${rest[@]}")
[[ "$servers" =~ ^[0-9]+$ && "$servers" -ge 1 ]] || die "--servers must be a positive integer"
[[ "$workers" =~ ^[0-9]+$ && "$workers" -ge 1 ]] || die "--workers must be a positive integer"
[[ "$port" =~ ^[0-9]+$ && "$port" -ge 1 && "$port" -le $((65535 - servers)) ]] || die "--port must be in 1..$((65535 - servers))"
[[ "$max_restarts" =~ ^[0-9]+$ ]] || die "--max-restarts must be a non-negative integer"
[[ "$host_timeout" =~ ^[0-9]+$ && "$host_timeout" -ge 1 ]] || die "--host-timeout must be a positive number of seconds"
[[ "$reconnect_timeout" =~ ^[0-9]+$ ]] || die "--reconnect-timeout must be a number of seconds"
[ -x "$bin" ] || die "psrec binary not found at $bin (build with launch/setup.sh, or pass --bin PATH)"
bin=$(realpath "$bin")
[ "$mode" = hosts ] || [ -z "$remote_bin$remote_dir" ] || die "--remote-bin and --remote-dir go with --hosts"
[ "$mode" != local ] || [ "$copy_bin" = 0 ] || die "--copy-bin goes with --hosts or --slurm"
[ "$modes" -le 1 ] || die "--hosts and --slurm are two ways to launch: choose one"
[ "$mode" = local ] || [ "$host_set" = 0 ] || die "--host is the one-machine mode's address; with --hosts or --slurm each host has its own"

declare -A R_host=()
H_target=() H_addr=() H_bind=() H_bin=() H_dir=() H_run=() nh=0
. "$here/launch/lib/hosts.sh"
. "$here/launch/lib/slurm.sh"
case "$mode" in
  local)
    # a port in use is a clear error here rather than a confusing one from the coordinator
    # (with --restart servers use the next ports: a restarted server must come back at the address workers know)
    for ((p = port; p <= port + servers * restart; p++)); do
      if (exec 3<>"/dev/tcp/$host/$p") 2>/dev/null; then
        die "port $p on $host is already in use (choose another with --port; servers use --port+1..--port+$servers)"
      fi
    done
    coord="tcp://$host:$port" ;;
  hosts)
    hosts_parse "$hostfile"
    [ -n "$remote_bin" ] || remote_bin=$bin
    [ -n "$remote_dir" ] || remote_dir=$PWD
    read -ra SSH <<< "$ssh_cmd"
    # run.sh's own ssh options come after the user's: ssh takes the first value given for an option
    alive=$(( (host_timeout + 2) / 3 ))
    SSH+=(-o BatchMode=yes -o ServerAliveInterval=$alive -o ServerAliveCountMax=3 -o ConnectTimeout=$((host_timeout > 2 ? host_timeout : 2)))
    coord="tcp://${H_addr[${R_host[coord]}]}:$port" ;;
  slurm)
    [ -n "$logs" ] || logs="$PWD/psrec-logs-${SLURM_JOB_ID:-none}"
    slurm_place
    trap slurm_cleanup EXIT
    coord="tcp://${H_addr[${R_host[coord]}]}:$port" ;;
esac
[ -n "$logs" ] || logs=$(mktemp -d /tmp/psrec-run-XXXXXX)
mkdir -p "$logs" || die "cannot create log directory $logs"
[ "$mode" = local ] || { logs=$(realpath "$logs"); chmod 700 "$logs"; }
job=$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ^ $$ ))
# the job's secrets: a fresh token (or CURVE keys) per job, passed to the roles as a file
case "$security" in
  token)
    [ -z "$keys" ] || die "--keys goes with --secure"
    if [ -z "$token" ]; then
      token="$logs/token"
      rm -f "$token"
      "$bin" keygen --token "$token" 2>/dev/null || die "cannot write the job token $token"
    fi
    [ "$mode" = local ] || token=$(realpath "$token")
    sec=(--token-file "$token") ;;
  curve)
    [ -z "$token" ] || die "--token-file is the token mode; --secure uses --keys"
    if [ -z "$keys" ]; then
      keys="$logs/keys"
      rm -rf "$keys"
      "$bin" keygen --out "$keys" >/dev/null 2>&1 || die "cannot make CURVE keys in $keys (does this libzmq have CURVE? try: $bin keygen --out $keys)"
    fi
    [ "$mode" = local ] || keys=$(realpath "$keys")
    sec=(--secure --keys "$keys") ;;
  none)
    [ -z "$token$keys" ] || die "--insecure takes neither --token-file nor --keys"
    sec=(--insecure) ;;
esac

tmpd=""
if [ "$mode" = hosts ]; then
  # run.sh's own files (in LOGS, so that even a kill -9 leaves nothing elsewhere)
  tmpd=$logs/.launch
  rm -rf "$tmpd" && mkdir -m 700 "$tmpd" || die "cannot create $tmpd"
  # every ssh session reads this fifo, which only run.sh holds open for writing: when run.sh ends (even
  # by kill -9) the sessions see end of input and the remote wrappers stop their roles
  hold=$tmpd/hold
  mkfifo -m 600 "$hold" && exec 9<> "$hold" || die "cannot create $hold"
  trap 'hosts_cleanup; rm -rf "$tmpd"' EXIT
  hosts_prepare
fi

pids=() names=()
declare -A restarts=()
# the command of a role, by name: coord, server-I, worker-I (the same after a restart)
role_cmd() {
  case "$1" in
    coord) cmd=("$bin" coord --bind "$coord" --servers "$servers" --workers "$workers" --job-id "$job" "${sec[@]}" "${train[@]}") ;;
    server-*) local i=${1#server-}
      # with --restart a server keeps its port, so a restarted one is where workers look for it
      local sp=0; [ "$restart" = 1 ] && sp=$((port + 1 + i))
      cmd=("$bin" server --coord "$coord" --bind "tcp://$host:$sp" --rank "$i" --job-id "$job" "${sec[@]}" "${train[@]}" "${srv[@]}") ;;
    worker-*) local i=${1#worker-}
      cmd=("$bin" worker --coord "$coord" --threads 1 --rank "$i" --job-id "$job" --no-progress "${sec[@]}" "${train[@]}") ;;
  esac
}
start() { # name [slot to replace] [1: wait until its host answers again]
  local name=$1 slot=${2:-}
  case "$mode" in
    local)
      role_cmd "$name"
      "${cmd[@]}" >> "$logs/$name.log" 2>&1 & ;;
    hosts) hosts_start_bg "$name" "${3:-0}" ;;
    slurm) slurm_start_bg "$name" ;;
  esac
  if [ -n "$slot" ]; then pids[$slot]=$!; else pids+=($!); names+=("$name"); fi
}
where() { [ "$mode" = local ] || echo " on ${H_target[${R_host[$1]}]}"; }
progress_pid=""
stop_all() {
  for p in "${pids[@]}" $progress_pid; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}" $progress_pid; do wait "$p" 2>/dev/null; done
}
trap 'echo; echo "run.sh: interrupted, stopping ${#pids[@]} process(es)" >&2; stop_all; exit 130' INT TERM

start coord
for ((i = 0; i < servers; i++)); do start "server-$i"; done
for ((i = 0; i < workers; i++)); do start "worker-$i"; done
if [ "$quiet" = 0 ]; then
  echo "run.sh: job $job: coordinator $coord, $servers server(s), $workers worker(s); security: $security; logs in $logs" >&2
  if [ "$mode" != local ]; then
    for n in "${names[@]}"; do
      h=${R_host[$n]}
      echo "run.sh:   $n on ${H_target[h]} (address ${H_addr[h]}, listening on ${H_bind[h]})${H_run[h]:+, run directory ${H_run[h]}}" >&2
    done
  fi
fi

# the combined progress line, until the coordinator is gone
if [ "$quiet" = 0 ]; then
  # (status waits for the coordinator to come up: the first request is retried until its deadline)
  "$bin" status --coord "$coord" --job-id "$job" "${sec[@]}" --progress --timeout 5000 >/dev/null 9>&- &
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
      # ssh exits 255 when it cannot reach the host or lost it (no answer to its keepalives)
      lost=0; [ "$mode" = hosts ] && [ "$rc" = 255 ] && lost=1
      if [ "$rc" -ne 0 ] && [ "$restart" = 1 ] && [ "${restarts[$name]:-0}" -lt "$max_restarts" ]; then
        restarts[$name]=$(( ${restarts[$name]:-0} + 1 ))
        why="exit $rc"; [ "$rc" -gt 128 ] && why="signal $((rc - 128))"
        [ "$lost" = 0 ] || why="lost the connection to ${H_target[${R_host[$name]}]}"
        echo >&2
        echo "run.sh: $name$(where "$name") died ($why); restarting it (${restarts[$name]}/$max_restarts)" >&2
        echo "run.sh: --- restart ${restarts[$name]} ($why) ---" >> "$logs/$name.log"
        start "$name" "$i" "$lost"
        remaining=$((remaining + 1))
      elif [ "$rc" -ne 0 ] && [ -z "$failed" ]; then
        failed=${names[$i]}
        echo >&2
        if [ "$lost" = 1 ]; then
          echo "run.sh: $failed failed: lost the connection to ${H_target[${R_host[$failed]}]} (ssh exit 255); its log ($logs/$failed.log) ends with:" >&2
        else
          echo "run.sh: $failed$(where "$failed") failed (exit $rc); its log ($logs/$failed.log) ends with:" >&2
        fi
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
