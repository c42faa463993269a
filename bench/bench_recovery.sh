#!/usr/bin/env bash
# What fault tolerance costs a running job (docs/operations.md): 1 server x 1 worker processes through
# launch/run.sh on the same data, with no checkpoints (the peer), checkpoint rounds every 2 s, the push
# log (--durability log: every acknowledged push fsync'ed in group commits), and both. Prints each
# configuration's examples/s and its ratio to the peer, and what the coordinator and servers logged.
#   bench/bench_recovery.sh [OUT_DIR]     env: ITEMS USERS EPOCHS NEG DIM REPS
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/recovery}
ITEMS=${ITEMS:-20000} USERS=${USERS:-100000} EPOCHS=${EPOCHS:-3} NEG=${NEG:-1024} DIM=${DIM:-64} REPS=${REPS:-2}
bin=build/psrec
test -x $bin || launch/setup.sh
mkdir -p "$out"
if [ ! -f "$out/shards1/freq.bin" ]; then
  $bin gen --out "$out/data" --items "$ITEMS" --categories 50 --train-users "$USERS" --test-users 2000 2>/dev/null
  $bin prep --in "$out/data/train.txt" --out "$out/shards1" --shards 1 2>/dev/null
fi
opts=(--data "$out/shards1" --epochs "$EPOCHS" --negatives "$NEG" --dim "$DIM" --batch 256)
num() { sed -E "s/.*\"$1\": ([0-9.e+-]+).*/\1/"; }
port=17790
rate() { # label, extra options...: mean examples/s over REPS runs
  local label=$1 sum=0; shift
  for ((r = 0; r < REPS; r++)); do
    rm -rf "$out/ck" "$out/logs-$label-$r" # (run.sh appends to an existing log)
    port=$((port + 3))
    launch/run.sh --quiet --servers 1 --workers 1 --port $port --logs "$out/logs-$label-$r" -- "${opts[@]}" "$@"
    sum=$(echo "$sum + $(grep '^{' "$out/logs-$label-$r/worker-0.log" | tail -1 | num examples_per_sec)" | bc -l)
  done
  echo "$sum / $REPS" | bc -l
}
none=$(rate none)
ck=$(rate ckpt --checkpoint-dir "$out/ck" --checkpoint-every 2s)
rounds=$(grep -c "round .* complete" "$out/logs-ckpt-0/coord.log" || true)
cost=$(grep -h "round .* complete" "$out/logs-ckpt-0/coord.log" | sed -E 's/.*\(([0-9.]+) s.*/\1/' | sort -n | tail -1)
log=$(rate log --checkpoint-dir "$out/ck" --durability log)
both=$(rate both --checkpoint-dir "$out/ck" --checkpoint-every 2s --durability log)
printf '%-52s %11s %8s\n' "1 server x 1 worker (run.sh), mean of $REPS" "examples/s" "ratio"
printf '%-52s %11.0f %8.2f\n' "no checkpoints (the peer)" "$none" 1
printf '%-52s %11.0f %8.2f\n' "checkpoint rounds every 2 s ($rounds rounds, slowest ${cost}s)" "$ck" "$(echo "$ck / $none" | bc -l)"
printf '%-52s %11.0f %8.2f\n' "--durability log (group-committed fdatasync)" "$log" "$(echo "$log / $none" | bc -l)"
printf '%-52s %11.0f %8.2f\n' "both" "$both" "$(echo "$both / $none" | bc -l)"
