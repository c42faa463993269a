#!/usr/bin/env bash
# What connection security costs: examples/s of the same training with no connection check
# (--insecure), the job token (PLAIN + ZAP, the default) and CURVE encryption (--secure), over tcp
# loopback, both as embedded roles (one process) and as 1 server x 1 worker processes (launch/run.sh).
# Modes are interleaved, in a rotated order each repetition (REPS), so that drift of a shared machine
# and order effects hit each mode alike; the table shows every run and the mean, and the ratios are
# means against --insecure.
#   bench/bench_secure.sh [OUT_DIR]     env: ITEMS USERS EPOCHS NEG DIM REPS
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/secure}
ITEMS=${ITEMS:-20000} USERS=${USERS:-100000} EPOCHS=${EPOCHS:-2} NEG=${NEG:-1024} DIM=${DIM:-64} REPS=${REPS:-3}
bin=build/psrec
test -x $bin || launch/setup.sh
mkdir -p "$out"
if [ ! -f "$out/shards1/freq.bin" ]; then
  $bin gen --out "$out/data" --items "$ITEMS" --categories 50 --train-users "$USERS" --test-users 2000 2>/dev/null
  $bin prep --in "$out/data/train.txt" --out "$out/shards1" --shards 1 2>/dev/null
fi
if ! $bin keygen --out "$out/probe-keys" >/dev/null 2>&1 && [ ! -f "$out/probe-keys/server.key" ]; then
  echo "bench_secure: this libzmq has no CURVE; --secure cannot be measured" >&2
  exit 1
fi
opts=(--data "$out/shards1" --threads 1 --epochs "$EPOCHS" --negatives "$NEG" --dim "$DIM" --batch 256)
num() { sed -E "s/.*\"$1\": ([0-9.e+-]+).*/\1/"; }
modes=(insecure token curve)
flags() { case $1 in insecure) echo --insecure ;; token) echo "" ;; curve) echo --secure ;; esac; }
declare -A emb proc
for ((r = 1; r <= REPS; r++)); do
  for ((k = 0; k < 3; k++)); do
    m=${modes[$(((r + k) % 3))]}
    # shellcheck disable=SC2046
    e=$($bin train --transport tcp --quiet $(flags "$m") "${opts[@]}" | num examples_per_sec)
    port=$((17800 + r * 10 + ${#m}))
    launch/run.sh --quiet --servers 1 --workers 1 --port "$port" --logs "$out/run-$m-$r" $(flags "$m") -- "${opts[@]}"
    p=$(grep '^{' "$out/run-$m-$r/worker-0.log" | num examples_per_sec)
    emb[$m]="${emb[$m]:-} $e"
    proc[$m]="${proc[$m]:-} $p"
  done
done
mean() { echo "$@" | tr ' ' '\n' | grep . | awk '{s += $1} END {printf "%.0f", s / NR}'; }
printf '%-10s %-44s %-44s\n' "security" "embedded roles over tcp: runs (mean)" "1 server x 1 worker processes: runs (mean)"
for m in "${modes[@]}"; do
  printf '%-10s %-44s %-44s\n' "$m" "$(printf '%.0f ' ${emb[$m]})($(mean ${emb[$m]}))" \
    "$(printf '%.0f ' ${proc[$m]})($(mean ${proc[$m]}))"
done
for m in token curve; do
  printf 'ratio %s / insecure: embedded %.3f, processes %.3f\n' "$m" \
    "$(echo "$(mean ${emb[$m]}) / $(mean ${emb[insecure]})" | bc -l)" \
    "$(echo "$(mean ${proc[$m]}) / $(mean ${proc[insecure]})" | bc -l)"
done
echo "(${ITEMS} items, $((USERS * EPOCHS)) examples per run, d=${DIM}, ${NEG} negatives, B=256, 1 worker thread)"
