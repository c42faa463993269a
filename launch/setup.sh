#!/usr/bin/env bash
# Installs psrec's build and runtime dependencies from Debian (as root, or through sudo) and builds it
# into ./build. Re-running is cheap: packages already present are not reinstalled.
#   launch/setup.sh [--werror] [--build-dir DIR] [--test-deps]
# --test-deps also installs what the multi-host launch tests use (tests/test_multihost.c: iproute2 and
# openssh-server for an sshd per network namespace; tests/test_slurm.c: slurm-wlm and munge for a
# single-node Slurm). The tests start daemons of their own; the packages' system services are not
# started by the installation (a policy-rc.d for its duration).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libopenblas-dev liblz4-dev libcmocka-dev libxxhash-dev)
TEST_PKGS=(iproute2 openssh-client openssh-server slurm-wlm munge)
werror=OFF
build=build
test_deps=0
while [ $# -gt 0 ]; do
  case "$1" in
    --werror) werror=ON ;;
    --build-dir) build="$2"; shift ;;
    --test-deps) test_deps=1 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

missing=() test_missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$test_deps" = 1 ]; then
  for p in "${TEST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || test_missing+=("$p")
  done
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if [ ${#missing[@]} -gt 0 ] || [ ${#test_missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ${#test_missing[@]} -gt 0 ]; then
  echo "setup.sh: installing for the tests ${test_missing[*]} (their services are not started)" >&2
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${test_missing[@]}" >/dev/null || true
  [ -z "$policy" ] || $SUDO rm -f "$policy"
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPSREC_WERROR="$werror" >/dev/null
cmake --build "$build" -j"$(nproc)" 2>&1 | grep -Ev '^\[ *[0-9]+%\]' || true
test -x "$build/psrec" || { echo "setup.sh: build failed" >&2; exit 1; }
