#!/usr/bin/env bash
# The embedded default, end to end: set up, generate planted-category data, prepare shards, train
# full softmax / sampled softmax (uniform negatives) / positives-only, evaluate each by full ranking,
# print a results table. Everything goes to ./demo-out (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-out}
launch/setup.sh
bin=build/psrec
mkdir -p "$out"
EPOCHS=${EPOCHS:-5}

$bin gen --out "$out/data"
$bin prep --in "$out/data/train.txt" --items "$out/data/items.tsv" --out "$out/shards" --shards 2

run() { # name, train options...
  local name=$1; shift
  echo "== train: $name ($*)" >&2
  $bin train --data "$out/shards" --model "$out/model-$name" --metrics "$out/metrics-$name.jsonl" \
       --epochs "$EPOCHS" --threads 2 "$@" > "$out/train-$name.json"
  $bin eval --model "$out/model-$name" --test "$out/data/test.txt" --items "$out/data/items.tsv" --k 10 --json \
       > "$out/eval-$name.json"
}
run full --full
run sampled-uniform --sampler uniform --negatives 1024
run positives-only --loss positives-only

num() { sed -E "s/.*\"$2\": ([-0-9.e]+).*/\1/" "$1"; }
printf '\n%-17s %10s %10s %8s %10s %8s %10s\n' model Recall@10 NDCG@10 MRR FoldRatio FoldAUC ex/s
for name in full sampled-uniform positives-only; do
  e="$out/eval-$name.json"
  printf '%-17s %10.4f %10.4f %8.4f %10.4f %8.4f %10.0f\n' "$name" "$(num "$e" recall)" "$(num "$e" ndcg)" \
    "$(num "$e" mrr)" "$(num "$e" fold_ratio)" "$(num "$e" fold_auc)" "$(num "$out/train-$name.json" examples_per_sec)"
done
full=$(num "$out/eval-full.json" recall); samp=$(num "$out/eval-sampled-uniform.json" recall)
fs=$(num "$out/eval-sampled-uniform.json" fold_ratio); fp=$(num "$out/eval-positives-only.json" fold_ratio)
awk -v f="$full" -v s="$samp" -v fs="$fs" -v fp="$fp" 'BEGIN {
  printf "\nsampled softmax (uniform negatives) reaches %.1f%% of full softmax Recall@10 (goal: >= 90%%)\n", 100*s/f
  printf "positives-only training folds: FoldRatio %.3f vs %.3f with negatives, %.0fx (goal: >= 3x)\n", fp, fs, fp/(fs>0?fs:1e-9)
  printf "(FoldRatio: share of top-10 items outside the user'"'"'s home categories, relative to a random list; docs/training.md)\n" }'
echo "models, metrics and logs are in $out/"
