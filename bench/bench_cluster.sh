#!/usr/bin/env bash
# Distributed training against the embedded trainer, in one script on the same data:
#   examples/s of the direct path (no messaging), the embedded default (inproc), 1 server x 1 worker
#   over tcp loopback (embedded and as processes through launch/run.sh), and 2 x 2 through run.sh;
#   bytes on the wire per example with and without LZ4.
#   bench/bench_cluster.sh [OUT_DIR]     env: ITEMS USERS EPOCHS NEG DIM
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/cluster}
ITEMS=${ITEMS:-20000} USERS=${USERS:-100000} EPOCHS=${EPOCHS:-2} NEG=${NEG:-1024} DIM=${DIM:-64}
bin=build/psrec
test -x $bin || launch/setup.sh
mkdir -p "$out"
if [ ! -f "$out/shards2/freq.bin" ]; then
  $bin gen --out "$out/data" --items "$ITEMS" --categories 50 --train-users "$USERS" --test-users 2000 2>/dev/null
  $bin prep --in "$out/data/train.txt" --out "$out/shards1" --shards 1 2>/dev/null
  $bin prep --in "$out/data/train.txt" --out "$out/shards2" --shards 2 2>/dev/null
fi
opts=(--epochs "$EPOCHS" --negatives "$NEG" --dim "$DIM" --batch 256)
num() { sed -E "s/.*\"$1\": ([0-9.e+-]+).*/\1/"; }
row() { # label json examples
  local rate wire raw
  rate=$(echo "$2" | num examples_per_sec); wire=$(echo "$2" | num wire_bytes); raw=$(echo "$2" | num wire_raw_bytes)
  printf '%-46s %11.0f %14.0f %14.0f\n' "$1" "$rate" "$(echo "$wire / $3" | bc -l)" "$(echo "$raw / $3" | bc -l)" >&2
  echo "$rate"
}
n1=$(( USERS * EPOCHS ))
printf '%-46s %11s %14s %14s\n' "configuration (1 worker thread unless said)" "examples/s" "wire B/example" "raw B/example" >&2
direct=$(row "embedded, direct (no messaging)" "$($bin train --data "$out/shards1" --threads 1 --transport direct --quiet "${opts[@]}")" $n1 | tail -1) 
inproc=$(row "embedded, inproc (the default)" "$($bin train --data "$out/shards1" --threads 1 --quiet "${opts[@]}")" $n1 | tail -1)
tcp=$(row "embedded roles over tcp loopback, LZ4" "$($bin train --data "$out/shards1" --threads 1 --transport tcp --quiet "${opts[@]}")" $n1 | tail -1)
tcpnz=$(row "embedded roles over tcp loopback, no LZ4" "$($bin train --data "$out/shards1" --threads 1 --transport tcp --no-compress --quiet "${opts[@]}")" $n1 | tail -1)
# processes through launch/run.sh: the worker's own JSON line has its rate and bytes
launch/run.sh --quiet --servers 1 --workers 1 --port 17761 --logs "$out/run-1x1" -- --data "$out/shards1" "${opts[@]}"
p11=$(row "processes 1 server x 1 worker (run.sh, tcp)" "$(grep '^{' "$out/run-1x1/worker-0.log")" $n1 | tail -1)
launch/run.sh --quiet --servers 2 --workers 2 --port 17762 --logs "$out/run-2x2" -- --data "$out/shards2" "${opts[@]}"
r0=$(grep '^{' "$out/run-2x2/worker-0.log" | num examples_per_sec); r1=$(grep '^{' "$out/run-2x2/worker-1.log" | num examples_per_sec)
printf '%-46s %11.0f\n' "processes 2 servers x 2 workers (sum of workers)" "$(echo "$r0 + $r1" | bc -l)" >&2
printf '\nratios to the embedded default (inproc): direct %.2f, tcp %.2f, tcp without LZ4 %.2f, 1x1 processes %.2f\n' \
  "$(echo "$direct / $inproc" | bc -l)" "$(echo "$tcp / $inproc" | bc -l)" "$(echo "$tcpnz / $inproc" | bc -l)" "$(echo "$p11 / $inproc" | bc -l)"
printf 'ratio 1x1 processes over tcp / direct: %.2f\n' "$(echo "$p11 / $direct" | bc -l)"
