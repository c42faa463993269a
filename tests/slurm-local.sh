#!/usr/bin/env bash
# tests/slurm-local.sh: a single-node Slurm cluster of its own for the Slurm launch test
# (tests/test_slurm.c): munged with a fresh key on a private socket, slurmctld and slurmd for this host
# (NodeAddr 127.0.0.1, 8 CPUs declared whatever the machine has), all state, logs and sockets in DIR,
# on free ports; nothing under /etc is used or changed. Commands reach it with SLURM_CONF=DIR/slurm.conf.
#
#   tests/slurm-local.sh up DIR     start it and wait until the node is idle; exits 77 with the reason
#                                   on stderr when this machine cannot (not root, Slurm or munge not
#                                   installed, a daemon that does not start here)
#   tests/slurm-local.sh down DIR   stop the daemons (safe to run more than once)
set -uo pipefail
cmd=${1:-} dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
skip() { echo "slurm-local: $*" >&2; "$0" down "$dir"; exit 77; }

free_port() { # a tcp port nobody listens on (from a range unlikely to be handed out as ephemeral)
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 10000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo 0
}

case "$cmd" in
  up)
    [ "$(id -u)" -eq 0 ] || skip "not root (slurmd runs job steps as their users and needs root)"
    for b in slurmctld slurmd munged mungekey srun salloc sbatch scontrol sinfo squeue scancel; do
      command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] ||
        skip "$b is not installed (apt-get install slurm-wlm munge)"
    done
    PATH=$PATH:/usr/sbin
    mkdir -p "$dir/state" "$dir/spool" || skip "cannot create $dir"
    chmod 755 "$dir"
    mungekey -c -f -k "$dir/munge.key" 2>"$dir/mungekey.err" || skip "mungekey failed: $(cat "$dir/mungekey.err")"
    chmod 600 "$dir/munge.key"
    munged -f --socket="$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
      --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" 2>"$dir/munged.err" ||
      skip "munged does not start here: $(cat "$dir/munged.err")"
    node=$(hostname -s)
    cat > "$dir/slurm.conf" <<EOF
ClusterName=psrectest
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    # in the foreground of their own sessions, so `down` stops exactly these processes
    setsid slurmctld -D -f "$SLURM_CONF" > "$dir/slurmctld.out" 2>&1 < /dev/null &
    echo $! > "$dir/slurmctld.bgpid"
    setsid slurmd -D -f "$SLURM_CONF" > "$dir/slurmd.out" 2>&1 < /dev/null &
    echo $! > "$dir/slurmd.bgpid"
    end=$((SECONDS + 30))
    until [ "$(sinfo -h -o '%T' 2>/dev/null)" = idle ]; do
      if [ $SECONDS -ge "$end" ] || ! kill -0 "$(cat "$dir/slurmctld.bgpid")" 2>/dev/null ||
         ! kill -0 "$(cat "$dir/slurmd.bgpid")" 2>/dev/null; then
        skip "the Slurm daemons did not bring the node up here (state: $(sinfo -h -o '%T' 2>&1 | head -1)): $(tail -n 3 "$dir/slurmctld.out" "$dir/slurmd.out" "$dir/slurmctld.log" "$dir/slurmd.log" 2>/dev/null | tr '\n' ' ')"
      fi
      sleep 0.1
    done
    ;;
  down)
    for f in slurmd slurmctld; do
      if [ -s "$dir/$f.bgpid" ]; then
        p=$(cat "$dir/$f.bgpid")
        kill "$p" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null
        rm -f "$dir/$f.bgpid"
      fi
    done
    if [ -S "$dir/munge.sock" ]; then munged --stop --socket="$dir/munge.sock" >/dev/null 2>&1; fi
    ;;
  *) echo "slurm-local: unknown command $cmd" >&2; exit 2 ;;
esac
exit 0
