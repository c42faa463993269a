#!/usr/bin/env bash
# Sets up (Debian packages + build with warnings as errors) and runs every test with ctest.
#   launch/test.sh [ctest arguments, e.g. -R test_loss]
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh --werror --build-dir build
cd build
ctest --output-on-failure -j2 --timeout 600 "$@"
