# launch/lib/slurm.sh: run.sh --slurm: roles as job steps inside a Slurm allocation (sourced by run.sh).
#
# Inside `salloc` or an `sbatch` script, the allocation's nodes come from SLURM_JOB_NODELIST (expanded
# by `scontrol show hostnames`) and each node's address from its NodeAddr (`scontrol show node`). The
# coordinator runs on the first node, server i and worker i on node i mod N. Every role is its own
# `srun --nodes=1 --ntasks=1 --nodelist=NODE --overlap` step, so one role can be restarted (--restart)
# without touching the others, and Slurm accounts, signals and cleans up each of them; the steps share
# the allocation's CPUs (--overlap), which is what a parameter-server job wants: servers are mostly
# idle network endpoints. srun carries each role's stdout and stderr back into LOGS/NAME.log.
#
# Files: the job's secrets (LOGS/token or LOGS/keys) and the training paths must be on a file system
# every node sees (Slurm's usual shared working directory); LOGS defaults to ./psrec-logs-JOBID there.
# --copy-bin broadcasts the binary to each node's /tmp with sbcast instead of assuming the same path.

# Fills H_target (node names), H_addr, H_bind (nh nodes) and R_host[role] from the allocation.
slurm_place() {
  [ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_JOB_NODELIST:-}" ] ||
    die "--slurm runs inside a Slurm allocation (salloc ... launch/run.sh --slurm, or an sbatch script like launch/psrec.sbatch): SLURM_JOB_ID is not set"
  command -v srun >/dev/null && command -v scontrol >/dev/null || die "--slurm needs srun and scontrol on PATH"
  local n k a
  nh=0
  while read -r n; do
    [ -n "$n" ] || continue
    H_target[nh]=$n
    a=$(scontrol show node -o "$n" 2>/dev/null | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
    H_addr[nh]=${a:-$n}
    if is_ipv4 "${H_addr[nh]}"; then H_bind[nh]=${H_addr[nh]}; else H_bind[nh]=0.0.0.0; fi
    nh=$((nh + 1))
  done < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  [ "$nh" -gt 0 ] || die "cannot list the allocation's nodes (scontrol show hostnames $SLURM_JOB_NODELIST)"
  # without --workers: one per task of the allocation left after the coordinator and the servers
  if [ "$workers_set" = 0 ]; then
    local tasks=${SLURM_NTASKS:-${SLURM_NPROCS:-0}}
    workers=$((tasks - 1 - servers))
    [ "$workers" -ge 1 ] || workers=1
  fi
  R_host[coord]=0
  for ((k = 0; k < servers; k++)); do R_host[server-$k]=$((k % nh)); done
  for ((k = 0; k < workers; k++)); do R_host[worker-$k]=$((k % nh)); done
  slurm_bin=$bin
  if [ "$copy_bin" = 1 ]; then
    slurm_bin=/tmp/psrec-$SLURM_JOB_ID
    sbcast --force "$bin" "$slurm_bin" || die "sbcast of $bin to the nodes' $slurm_bin failed"
    [ "$quiet" = 1 ] || echo "run.sh: $bin copied to $slurm_bin on the allocation's nodes (sbcast)" >&2
  fi
}

# Deletes the broadcast binary again (a step on every node).
slurm_cleanup() {
  [ "$copy_bin" = 1 ] || return 0
  srun --nodes="$nh" --ntasks="$nh" --ntasks-per-node=1 --overlap --input=none --quiet rm -f "$slurm_bin" >/dev/null 2>&1
}

# Starts a role as a job step in the background (its pid: $!).
slurm_start_bg() {
  local name=$1 h=${R_host[$1]}
  remote_role_cmd "$name"
  srun --nodes=1 --ntasks=1 --nodelist="${H_target[h]}" --overlap --input=none --quiet \
    --job-name="psrec-$name" "${cmd[@]}" >> "$logs/$name.log" 2>&1 &
}
