# launch/lib/hosts.sh: run.sh --hosts FILE: roles on hosts reached by ssh (sourced by run.sh).
#
# The hostfile: one host a line, `#` starts a comment.
#
#   HOST [ROLE...] [addr=ADDR] [bind=ADDR] [bin=PATH] [dir=PATH]
#
#   10.0.0.1   coord server
#   10.0.0.2   server worker worker
#   gpu3       worker:4          addr=192.168.1.13
#
# HOST is what ssh connects to (may be user@host, or an alias from ~/.ssh/config). ROLE is coord, server
# or worker, or server:N / worker:N for N of them; ranks follow the file's order. If no line names a
# role, --servers and --workers are spread over the hosts in turn (the coordinator on the first).
# addr= is the address the other roles use to reach this host (default: HOST without user@); bind= the
# address its roles listen on (default: addr when that is an IPv4 address, otherwise 0.0.0.0); bin= the
# psrec binary there (default: --remote-bin, or the same path as --bin); dir= the directory the roles
# run in there (default: --remote-dir, or the current directory's path), where the training options'
# relative paths point.
#
# How a role runs: each host first gets a private run directory (mktemp -d, mode 0700) holding a copy
# of the job's secrets (token file or CURVE keys dir, sent through ssh's stdin into 0600 files, never on
# a command line) and, with --copy-bin, the binary. Then each role is one `ssh HOST sh -c WRAPPER`: the
# wrapper records the role's pid in the run directory, stops an earlier instance of the same role still
# running there (a restart after a lost connection), and kills the role when the ssh session ends (the
# session's stdin closes: run.sh stopped, died, or lost the host). The role's stdout and stderr come
# back through ssh into LOGS/NAME.log. ssh exits 255 when the connection fails or is lost (no answer to
# ServerAlive probes for --host-timeout seconds): without --restart that is a failed role; with it, the
# role is started again once the host answers ssh (up to --reconnect-timeout seconds). At the end each
# run directory is deleted (with the secrets), after stopping anything left in it.

# POSIX-sh single quoting, for words sent through ssh (the remote shell parses the command line again)
q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
qargs() {
  local a out=""
  for a in "$@"; do out+="$(q "$a") "; done
  printf '%s' "${out% }"
}

# the remote wrapper of one role: sh -c WRAPPER psrec-role RUNDIR NAME WORKDIR COMMAND...
ROLE_WRAPPER='run=$1 name=$2 wd=$3; shift 3
exec 3<&0 </dev/null
cd "$wd" || exit 2
f=$run/$name.pid
if [ -s "$f" ]; then
  o=$(cat "$f")
  if kill "$o" 2>/dev/null; then
    echo "run.sh: stopping the previous $name (pid $o) on $(hostname) first" >&2
    i=0; while kill -0 "$o" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    kill -9 "$o" 2>/dev/null
  fi
fi
"$@" 3<&- &
p=$!
echo "$p" > "$f"
(while read -r _; do :; done <&3; kill "$p" 2>/dev/null) >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$p"; rc=$?
kill "$w" 2>/dev/null
[ "$(cat "$f" 2>/dev/null)" = "$p" ] && rm -f "$f"
exit $rc'

# prepares a host: sh -c PREP psrec-prep BIN WORKDIR < tar stream; prints the run directory
PREP_SCRIPT='umask 077
d=$(mktemp -d "${TMPDIR:-/tmp}/psrec-remote-XXXXXX") || exit 1
tar -C "$d" -xf - || { rm -rf "$d"; exit 1; }
b=$1; [ -n "$b" ] || b=$d/psrec
[ -x "$b" ] || { echo "no executable psrec at $b on $(hostname) (bin= in the hostfile, --remote-bin, or --copy-bin)" >&2; rm -rf "$d"; exit 3; }
[ -d "$2" ] || { echo "no directory $2 on $(hostname) (the roles run there: dir= in the hostfile, or --remote-dir)" >&2; rm -rf "$d"; exit 4; }
echo "$d"'

# stops what is left of the job on a host and deletes its run directory: sh -c CLEAN psrec-clean RUNDIR
CLEAN_SCRIPT='for f in "$1"/*.pid; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$1"'

is_ipv4() { [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; }

# Reads the hostfile into H_target/H_addr/H_bind/H_bin/H_dir (nh hosts) and R_host[role name] = host
# index; sets servers and workers (checked against --servers/--workers when those were given).
hosts_parse() {
  local file=$1 line lineno=0 w role n k named=0 unnamed=0 ns=0 nw=0 nc=0
  local -a words
  [ -r "$file" ] || die "cannot read the hostfile $file"
  nh=0
  while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line=${line%%#*}
    read -ra words <<< "$line"
    [ ${#words[@]} -gt 0 ] || continue
    local i=$nh has=0
    nh=$((nh + 1))
    H_target[i]=${words[0]}
    H_addr[i]=${words[0]##*@}
    H_bind[i]="" H_bin[i]="" H_dir[i]=""
    for w in "${words[@]:1}"; do
      case "$w" in
        addr=?*) H_addr[i]=${w#addr=} ;;
        bind=?*) H_bind[i]=${w#bind=} ;;
        bin=?*) H_bin[i]=${w#bin=} ;;
        dir=?*) H_dir[i]=${w#dir=} ;;
        coord | server | worker | coord:* | server:* | worker:*)
          role=${w%%:*} n=1
          [[ "$w" != *:* ]] || n=${w#*:}
          [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 ]] || die "$file line $lineno: '$w': the count after ':' must be a positive integer"
          for ((k = 0; k < n; k++)); do
            case "$role" in
              coord) R_host[coord]=$i; nc=$((nc + 1)) ;;
              server) R_host[server-$ns]=$i; ns=$((ns + 1)) ;;
              worker) R_host[worker-$nw]=$i; nw=$((nw + 1)) ;;
            esac
          done
          has=1 ;;
        *) die "$file line $lineno: unknown word '$w' (roles: coord, server, worker, server:N, worker:N; options: addr=, bind=, bin=, dir=)" ;;
      esac
    done
    [ -n "${H_bind[i]}" ] || { if is_ipv4 "${H_addr[i]}"; then H_bind[i]=${H_addr[i]}; else H_bind[i]=0.0.0.0; fi; }
    if [ "$has" = 1 ]; then named=$((named + 1)); else unnamed=$((unnamed + 1)); fi
  done < "$file"
  [ "$nh" -gt 0 ] || die "the hostfile $file names no host"
  if [ "$named" -gt 0 ]; then
    [ "$unnamed" = 0 ] || die "$file: some lines name roles and $unnamed do not: name them on every line, or on none (then --servers/--workers are spread over the hosts)"
    [ "$nc" = 1 ] || die "$file: name exactly one coord (found $nc)"
    [ "$ns" -ge 1 ] && [ "$nw" -ge 1 ] || die "$file: name at least one server and one worker"
    [ "$servers_set" = 0 ] || [ "$servers" = "$ns" ] || die "--servers $servers, but $file names $ns server(s)"
    [ "$workers_set" = 0 ] || [ "$workers" = "$nw" ] || die "--workers $workers, but $file names $nw worker(s)"
    servers=$ns workers=$nw
  else
    R_host[coord]=0
    for ((k = 0; k < servers; k++)); do R_host[server-$k]=$((k % nh)); done
    for ((k = 0; k < workers; k++)); do R_host[worker-$k]=$((k % nh)); done
  fi
}

ssh_to() { # host index, then the remote command words
  local h=$1
  shift
  "${SSH[@]}" "${H_target[h]}" "$(qargs "$@")"
}

# Sets up every host in parallel: a run directory with the secrets (and the binary); H_run[i]
hosts_prepare() {
  local stage="$tmpd/ship" i bad=0
  mkdir -m 700 "$stage" || die "cannot create $stage"
  case "$security" in
    token) ln -s "$(realpath "$token")" "$stage/token" ;;
    curve) ln -s "$(realpath "$keys")" "$stage/keys" ;;
  esac
  [ "$copy_bin" = 0 ] || ln -s "$(realpath "$bin")" "$stage/psrec"
  for ((i = 0; i < nh; i++)); do
    local rbin=${H_bin[i]:-$remote_bin}
    [ "$copy_bin" = 0 ] || rbin=""
    [ -n "${H_dir[i]}" ] || H_dir[i]=$remote_dir
    tar -C "$stage" -chf - . | ssh_to "$i" sh -c "$PREP_SCRIPT" psrec-prep "$rbin" "${H_dir[i]}" \
      > "$tmpd/prep-$i.out" 2> "$tmpd/prep-$i.err" &
  done
  wait
  for ((i = 0; i < nh; i++)); do
    H_run[i]=$(tail -n 1 "$tmpd/prep-$i.out")
    if [[ "${H_run[i]}" != /* ]]; then
      H_run[i]=""
      echo "run.sh: cannot set up ${H_target[i]}: $(tail -n 3 "$tmpd/prep-$i.err" | tr '\n' ' ')" >&2
      bad=1
    else
      [ "$copy_bin" = 0 ] || H_bin[i]=${H_run[i]}/psrec
      [ -n "${H_bin[i]}" ] || H_bin[i]=$remote_bin
    fi
  done
  [ "$bad" = 0 ] || { hosts_cleanup; exit 2; }
}

# Stops anything left and deletes the run directories (with the secrets), in parallel, bounded by
# ssh's ConnectTimeout for hosts that are unreachable.
hosts_cleanup() {
  local i cp=()
  for ((i = 0; i < nh; i++)); do
    [ -z "${H_run[i]:-}" ] && continue
    ssh_to "$i" sh -c "$CLEAN_SCRIPT" psrec-clean "${H_run[i]}" </dev/null >/dev/null 2>&1 9>&- &
    cp+=($!)
  done
  [ ${#cp[@]} = 0 ] || wait "${cp[@]}"
}

# The command of a role on its host (sets cmd): the same roles as on one machine, with each host's
# bind address, the address peers use (--advertise), fixed ports (--port for the coordinator,
# --port+1+rank for server rank) and the secrets from the host's run directory.
remote_role_cmd() {
  local name=$1 h=${R_host[$1]} hc=${R_host[coord]} b
  local -a rsec
  if [ "$mode" = hosts ]; then
    b=${H_bin[h]}
    case "$security" in
      token) rsec=(--token-file "${H_run[h]}/token") ;;
      curve) rsec=(--secure --keys "${H_run[h]}/keys") ;;
      none) rsec=(--insecure) ;;
    esac
  else
    b=$slurm_bin rsec=("${sec[@]}")
  fi
  local caddr="tcp://${H_addr[hc]}:$port"
  case "$name" in
    coord) cmd=("$b" coord --bind "tcp://${H_bind[h]}:$port" --servers "$servers" --workers "$workers" --job-id "$job" "${rsec[@]}" "${train[@]}") ;;
    server-*) local i=${name#server-} sp=$((port + 1 + ${name#server-}))
      cmd=("$b" server --coord "$caddr" --bind "tcp://${H_bind[h]}:$sp" --advertise "tcp://${H_addr[h]}:$sp" --rank "$i" --job-id "$job" "${rsec[@]}" "${train[@]}" "${srv[@]}") ;;
    worker-*) local i=${name#worker-}
      cmd=("$b" worker --coord "$caddr" --threads 1 --rank "$i" --job-id "$job" --no-progress "${rsec[@]}" "${train[@]}") ;;
  esac
}

# Starts a role over ssh in the background (its pid: $!). With wait_host=1 (a restart after a lost
# connection), first waits until the host answers ssh again, up to --reconnect-timeout seconds.
hosts_start_bg() {
  local name=$1 wait_host=${2:-0} h=${R_host[$1]}
  remote_role_cmd "$name"
  local remote
  remote=$(qargs sh -c "$ROLE_WRAPPER" psrec-role "${H_run[h]}" "$name" "${H_dir[h]}" "${cmd[@]}")
  (
    exec 9>&-
    if [ "$wait_host" = 1 ]; then
      end=$((SECONDS + reconnect_timeout))
      until "${SSH[@]}" "${H_target[h]}" true </dev/null >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$end" ]; then
          echo "run.sh: ${H_target[h]} did not answer ssh for $reconnect_timeout s" >&2
          exit 255
        fi
        sleep 1 # a retry interval, not synchronisation
      done
      echo "run.sh: ${H_target[h]} answers again; starting $name" >&2
    fi
    exec "${SSH[@]}" "${H_target[h]}" "$remote" < "$hold"
  ) >> "$logs/$name.log" 2>&1 &
}
