#!/usr/bin/env bash
# tests/netns-hosts.sh: several "hosts" on one machine for the multi-host launch test
# (tests/test_multihost.c): network namespaces joined by veth pairs to a bridge in the root namespace
# (which reaches them all, like a launch node), addresses 10.212.X.1..N, and an sshd per namespace on
# port 22 that accepts only a key generated for the test. The namespaces share the file system, as
# hosts with a shared (NFS) home would. Needs root, iproute2 and openssh-server.
#
#   tests/netns-hosts.sh up DIR N     create N hosts; writes DIR/hosts (one address a line) and DIR/ssh
#                                     (the ssh command with the test key), exits 77 with the reason on
#                                     stderr when this machine cannot (not root, no `ip netns`, no sshd)
#   tests/netns-hosts.sh cut DIR I    take host I's link down (1-based): its processes keep running,
#                                     cut off from everyone, as a pulled cable or a partition
#   tests/netns-hosts.sh heal DIR I   bring it back
#   tests/netns-hosts.sh procs DIR NAME  prints how many processes called NAME run in the hosts
#   tests/netns-hosts.sh down DIR     stop the sshds and every process left in the namespaces, delete
#                                     the namespaces, veths and bridge (safe to run more than once)
set -uo pipefail
cmd=${1:-} dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
skip() { echo "netns-hosts: $*" >&2; exit 77; }
fail() { # a half-built set of hosts is taken down again
  echo "netns-hosts: $*" >&2
  [ "$cmd" != up ] || "$0" down "$dir"
  exit 1
}

# the names of this set of hosts: an id kept in DIR/netns.env (interface names must fit in 15 chars)
load() { [ -f "$dir/netns.env" ] || return 1; . "$dir/netns.env"; }
ns() { echo "psrec-$ID-h$1"; }
veth() { echo "psr${ID}h$1"; }

case "$cmd" in
  up)
    n=${3:-3}
    [ "$(id -u)" -eq 0 ] || skip "not root (network namespaces and veth pairs need root)"
    command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    [ -x "$sshd" ] || skip "sshd is not installed (apt-get install openssh-server)"
    command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || skip "the ssh client is not installed"
    mkdir -p "$dir" || fail "cannot create $dir"
    ID=$(printf '%05x' $(( (RANDOM << 5 ^ $$) & 0xfffff )))
    # a /24 that no interface here uses yet
    for try in $(seq 1 50); do
      X=$(( RANDOM % 250 + 1 ))
      ip -4 addr show | grep -q " 10\.212\.$X\." || break
    done
    echo "ID=$ID X=$X N=$n" > "$dir/netns.env"
    probe="psrec-$ID-probe"
    ip netns add "$probe" 2>"$dir/netns.err" || skip "ip netns does not work here: $(cat "$dir/netns.err")"
    ip netns del "$probe"
    ip link add "psr${ID}br" type bridge || fail "cannot create a bridge"
    ip addr add "10.212.$X.254/24" dev "psr${ID}br" && ip link set "psr${ID}br" up || fail "cannot configure the bridge"
    rm -f "$dir/id_ed25519" "$dir/id_ed25519.pub" "$dir/host_key" "$dir/host_key.pub"
    ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519" -C psrec-test </dev/null || fail "ssh-keygen failed"
    ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" -C psrec-test-host </dev/null || fail "ssh-keygen failed"
    cp "$dir/id_ed25519.pub" "$dir/authorized_keys" && chmod 600 "$dir/authorized_keys"
    mkdir -p /run/sshd # sshd's privilege separation directory
    : > "$dir/hosts"
    for i in $(seq 1 "$n"); do
      a="10.212.$X.$i"
      ip netns add "$(ns "$i")" || fail "cannot create namespace $(ns "$i")"
      ip -n "$(ns "$i")" link set lo up
      ip link add "$(veth "$i")" type veth peer name "psr${ID}n$i" || fail "cannot create a veth pair"
      ip link set "psr${ID}n$i" netns "$(ns "$i")"
      ip -n "$(ns "$i")" link set "psr${ID}n$i" name eth0
      ip -n "$(ns "$i")" addr add "$a/24" dev eth0
      ip -n "$(ns "$i")" link set eth0 up
      ip link set "$(veth "$i")" master "psr${ID}br"
      ip link set "$(veth "$i")" up
      cat > "$dir/sshd_config-h$i" <<EOF
Port 22
ListenAddress $a
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd-h$i.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxSessions 50
MaxStartups 50
LogLevel ERROR
EOF
      ip netns exec "$(ns "$i")" "$sshd" -f "$dir/sshd_config-h$i" -E "$dir/sshd-h$i.log" ||
        fail "sshd did not start in $(ns "$i"): $(cat "$dir/sshd-h$i.log")"
      echo "$a" >> "$dir/hosts"
    done
    ssh_cmd="ssh -F /dev/null -i $dir/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
    echo "$ssh_cmd" > "$dir/ssh"
    # ready when every sshd answers (polled with a deadline)
    for a in $(cat "$dir/hosts"); do
      end=$((SECONDS + 20))
      until $ssh_cmd -o ConnectTimeout=2 "$a" true </dev/null 2>"$dir/ssh.err"; do
        [ $SECONDS -lt $end ] || fail "ssh to $a does not work: $(cat "$dir/ssh.err")"
        sleep 0.1
      done
    done
    ;;
  cut | heal)
    load || fail "no hosts in $dir"
    i=${3:?host number}
    ip link set "$(veth "$i")" "$([ "$cmd" = cut ] && echo down || echo up)" || fail "cannot $cmd host $i"
    ;;
  procs)
    load || fail "no hosts in $dir"
    name=${3:?process name}
    c=0
    for i in $(seq 1 "$N"); do
      for p in $(ip netns pids "$(ns "$i")" 2>/dev/null); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$name" ] && c=$((c + 1))
      done
    done
    echo "$c"
    ;;
  down)
    load || exit 0
    for i in $(seq 1 "$N"); do
      if [ -s "$dir/sshd-h$i.pid" ]; then kill "$(cat "$dir/sshd-h$i.pid")" 2>/dev/null; fi
      # whatever still runs in the namespace was started through its sshd by the test
      pids=$(ip netns pids "$(ns "$i")" 2>/dev/null)
      [ -z "$pids" ] || kill -9 $pids 2>/dev/null
      ip netns del "$(ns "$i")" 2>/dev/null # takes the veth pair with it
      ip link del "$(veth "$i")" 2>/dev/null
    done
    ip link del "psr${ID}br" 2>/dev/null
    rm -f "$dir/netns.env"
    ;;
  *) echo "netns-hosts: unknown command $cmd" >&2; exit 2 ;;
esac
exit 0
