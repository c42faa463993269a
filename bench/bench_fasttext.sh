#!/usr/bin/env bash
# psrec's embedded trainer against fastText (`supervised -loss ns`) on the same planted-category data,
# with the same dimension, negatives, epochs and threads; reports examples/s and Recall@10 of both
# (full ranking, history items excluded for both) and their ratio.
#   bench/bench_fasttext.sh [OUT_DIR]      env: ITEMS USERS EPOCHS NEG DIM THREADS
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/fasttext}
ITEMS=${ITEMS:-20000} USERS=${USERS:-200000} EPOCHS=${EPOCHS:-5} NEG=${NEG:-1024} DIM=${DIM:-64} THREADS=${THREADS:-2}
command -v fasttext >/dev/null || { apt-get install -y -qq fasttext >/dev/null; }
bin=build/psrec
test -x $bin || launch/setup.sh
mkdir -p "$out"
$bin gen --out "$out/data" --items "$ITEMS" --categories 50 --train-users "$USERS" --test-users 5000 >/dev/null 2>&1
$bin prep --in "$out/data/train.txt" --items "$out/data/items.tsv" --out "$out/shards" --shards "$THREADS" 2>/dev/null

# --- psrec: B=256, NEG shared negatives, DIM; three configurations (defaults; linear tower with a
# lower item learning rate and gravity, tuned on this data; word2vec-style logistic loss)
ps() { # name, options...
  local name=$1; shift
  $bin train --data "$out/shards" --model "$out/psrec-$name" --epochs "$EPOCHS" --threads "$THREADS" --batch 256 \
       --negatives "$NEG" --dim "$DIM" --quiet "$@" > "$out/psrec-$name-train.json"
  $bin eval --model "$out/psrec-$name" --test "$out/data/test.txt" --k 10 --json > "$out/psrec-$name-eval.json"
}
ps default
ps tuned --hidden 0 --lr 0.03 --gravity 0.5
ps logistic --hidden 0 --loss logistic --neg-weight 5

# --- fastText: one line per example, labels = positives, words = history items and the region
to_ft() { sed -E 's/(^| )_home=[^ ]*//; s/pos=([^ ]*)/\n&/' "$1" | awk '
  NF==0 {next}
  { labels=""; words="";
    for (i=1;i<=NF;i++) { split($i, kv, "="); n=split(kv[2], ids, ",");
      for (j=1;j<=n;j++) { id=ids[j]; sub(/:.*/, "", id);
        if (kv[1]=="pos") labels=labels" __label__"id; else words=words" "kv[1]"_"id } }
    print substr(labels,2) words }'; }
to_ft "$out/data/train.txt" > "$out/ft-train.txt"
to_ft "$out/data/test.txt" > "$out/ft-test.txt"
n_train=$(wc -l < "$out/ft-train.txt")
ft() { # neg -> prints seconds
  local neg=$1 s e
  s=$(date +%s.%N)
  fasttext supervised -input "$out/ft-train.txt" -output "$out/ft-model-$neg" -loss ns -neg "$neg" -dim "$DIM" \
    -epoch "$EPOCHS" -thread "$THREADS" -lr 0.1 -minCount 1 -verbose 0 >/dev/null
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
ft_recall() { # neg -> Recall@10 with history excluded (ask for 10 + max history predictions, drop history)
  local neg=$1
  fasttext predict "$out/ft-model-$neg.bin" "$out/ft-test.txt" 40 > "$out/ft-pred-$neg.txt"
  paste -d'\t' "$out/ft-test.txt" "$out/ft-pred-$neg.txt" | awk -F'\t' '
    { n=split($1, t, " "); delete rel; delete hist; nrel=0
      for (i=1;i<=n;i++) { if (t[i] ~ /^__label__/) { rel[t[i]]=1; nrel++ } else if (t[i] ~ /^hist_/) { h=t[i]; sub(/^hist_/, "__label__", h); hist[h]=1 } }
      m=split($2, p, " "); got=0; hit=0
      for (i=1;i<=m && got<10;i++) { if (p[i] in hist) continue; got++; if (p[i] in rel) hit++ }
      if (nrel>0) { s+=hit/nrel; q++ } }
    END { printf "%.4f\n", s/q }'
}
ft_sec=$(ft "$NEG"); ft_rec=$(ft_recall "$NEG")
ft5_sec=$(ft 5); ft5_rec=$(ft_recall 5)

num() { sed -E "s/.*\"$2\": ([0-9.e+-]+).*/\1/" "$1"; }
ft_rate=$(echo "$n_train * $EPOCHS / $ft_sec" | bc -l)
ft5_rate=$(echo "$n_train * $EPOCHS / $ft5_sec" | bc -l)
printf '\nitems=%s train examples=%s epochs=%s dim=%s negatives=%s threads=%s\n' "$ITEMS" "$n_train" "$EPOCHS" "$DIM" "$NEG" "$THREADS"
printf '%-58s %12s %10s\n' "trainer" "examples/s" "Recall@10"
for n in default tuned logistic; do
  case $n in
    default) label="psrec defaults (MLP 128, softmax)" ;;
    tuned) label="psrec linear, softmax, lr 0.03, gravity 0.5" ;;
    logistic) label="psrec linear, logistic loss (fastText's), lr 0.1" ;;
  esac
  printf '%-58s %12.0f %10.4f\n' "$label, $NEG shared neg" "$(num "$out/psrec-$n-train.json" examples_per_sec)" \
    "$(num "$out/psrec-$n-eval.json" recall)"
done
printf '%-58s %12.0f %10.4f\n' "fastText -loss ns -neg $NEG" "$ft_rate" "$ft_rec"
printf '%-58s %12.0f %10.4f\n' "fastText -loss ns -neg 5 (its default)" "$ft5_rate" "$ft5_rec"
for n in default tuned logistic; do
  printf 'speed ratio psrec %s / fastText (-neg %s): %.2fx; / fastText (-neg 5): %.2fx\n' "$n" "$NEG" \
    "$(echo "$(num "$out/psrec-$n-train.json" examples_per_sec) / $ft_rate" | bc -l)" \
    "$(echo "$(num "$out/psrec-$n-train.json" examples_per_sec) / $ft5_rate" | bc -l)"
done
