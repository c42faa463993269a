#!/usr/bin/env bash
# Sets up (Debian packages, including those the multi-host launch tests use, + build with warnings as
# errors) and runs every test with ctest. Tests that cannot run here (test_multihost without root or
# sshd, test_slurm without Slurm) are reported as skipped, with the reason in their output.
#   launch/test.sh [ctest arguments, e.g. -R test_loss]
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh --werror --build-dir build --test-deps
cd build
ctest --output-on-failure -j2 --timeout 600 "$@"
