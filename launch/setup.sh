#!/usr/bin/env bash
# Installs psrec's build and runtime dependencies from Debian (as root, or through sudo) and builds it
# into ./build. Re-running is cheap: packages already present are not reinstalled.
#   launch/setup.sh [--werror] [--build-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libopenblas-dev liblz4-dev libcmocka-dev libxxhash-dev)
werror=OFF
build=build
while [ $# -gt 0 ]; do
  case "$1" in
    --werror) werror=ON ;;
    --build-dir) build="$2"; shift ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPSREC_WERROR="$werror" >/dev/null
cmake --build "$build" -j"$(nproc)" 2>&1 | grep -Ev '^\[ *[0-9]+%\]' || true
test -x "$build/psrec" || { echo "setup.sh: build failed" >&2; exit 1; }
