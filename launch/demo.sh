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

python3 - "$out" <<'PY' 2>/dev/null || awk_fallback=1
import json, sys
out = sys.argv[1]
rows = []
for name in ["full", "sampled-uniform", "positives-only"]:
    t = json.load(open(f"{out}/train-{name}.json")); e = json.load(open(f"{out}/eval-{name}.json"))
    rows.append((name, e["recall"], e["ndcg"], e["mrr"], e["fold_ratio"], e["fold_auc"], t["examples_per_sec"]))
print("\n%-17s %10s %10s %8s %10s %8s %10s" % ("model", "Recall@10", "NDCG@10", "MRR", "FoldRatio", "FoldAUC", "ex/s"))
for r in rows:
    print("%-17s %10.4f %10.4f %8.4f %10.4f %8.4f %10.0f" % r)
full, samp, pos = rows
print("\nsampled/full Recall@10: %.3f (goal >= 0.90)" % (samp[1] / full[1]))
print("FoldRatio positives-only / sampled-uniform: %.1fx (goal >= 3x)" % (pos[4] / max(samp[4], 1e-9)))
PY
if [ "${awk_fallback:-0}" = 1 ]; then
  for name in full sampled-uniform positives-only; do echo "$name: $(cat "$out/eval-$name.json")"; done
fi
