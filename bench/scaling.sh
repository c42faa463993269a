#!/usr/bin/env bash
# bench/scaling.sh: what a psrec job costs as the catalogue and the negatives grow (issue 5,
# docs/scaling.md). Every run is a real cluster of processes through launch/run.sh: 2 parameter
# servers x 2 workers on this machine, d = 32, f16 rows with row-wise Adagrad, every catalogue row
# materialised before training (--materialise), a fixed number of steps per worker.
#
#   bench/scaling.sh [BUILD_DIR]
#     ITEMS="100000 1000000 10000000 100000000"   catalogue sizes of the items sweep
#     WHERE="servers workers"                      where the items sweep draws its negatives
#     NEGS="256 1024 4096 16384"                   negatives of the negatives sweep (on workers vs servers)
#     NEG_ITEMS=1000000                            catalogue of the negatives sweep
#     STEPS=200 BATCH=256 S=4096 USERS=50000       steps per worker, batch, negatives (items sweep), users
#     OUT=docs                                     where scaling-*.tsv and img/scaling-*.png go
#
# Prints one line per run and writes OUT/scaling-items.tsv, OUT/scaling-negatives.tsv and, when gnuplot
# is installed, OUT/img/scaling-items.png and OUT/img/scaling-negatives.png. The ratios printed compare
# runs of this script against each other (the 10^5 run for the items sweep, worker-side negatives at the
# same S for the negatives sweep), so a slower machine changes the rates, not the comparisons.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
bin=$build/psrec
ITEMS=${ITEMS:-"100000 1000000 10000000 100000000"}
NEGS=${NEGS:-"256 1024 4096 16384"}
WHERE=${WHERE:-"servers workers"}
NEG_ITEMS=${NEG_ITEMS:-1000000}
STEPS=${STEPS:-200}
BATCH=${BATCH:-256}
S=${S:-4096}
USERS=${USERS:-50000}
OUT=${OUT:-$here/docs}
work=$(mktemp -d /tmp/psrec-scaling-XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -x "$bin" ] || { echo "scaling.sh: no $bin (build first)" >&2; exit 2; }

# data with a catalogue of $1 items (ids 0..N-1); the training data is the same size for every N
data() {
    local n=$1 d=$work/data-$1
    [ -d "$d/prep" ] && { echo "$d/prep"; return; }
    "$bin" gen --out "$d/gen" --items "$n" --categories 100 --train-users "$USERS" --test-users 100 --seed 1 \
        2>/dev/null
    if "$bin" prep --help 2>&1 | grep -q -- --catalogue; then
        "$bin" prep --in "$d/gen/train.txt" --catalogue "$n" --out "$d/prep" --shards 2 2>/dev/null
    else
        "$bin" prep --in "$d/gen/train.txt" --items "$d/gen/items.tsv" --out "$d/prep" --shards 2 2>/dev/null
    fi
    rm -f "$d/gen/items.tsv" "$d/gen/test.txt"
    echo "$d/prep"
}

num() { # num FILE KEY: a number from the JSON result line of a worker log
    grep -o "\"$2\": [0-9.e+-]*" "$1" | tail -1 | awk '{print $2}'
}

# run NAME DATA WHERE NEGATIVES: one 2 x 2 job; prints a TSV row of its measurements
run() {
    local name=$1 dir=$2 where=$3 negs=$4 logs=$work/logs-$1
    local port=$((20000 + RANDOM % 20000))
    "$here/launch/run.sh" --bin "$bin" --servers 2 --workers 2 --port "$port" --logs "$logs" -- \
        --data "$dir" --dim 32 --hidden 64 --row-dtype f16 --opt rowwise-adagrad --batch "$BATCH" \
        --negatives "$negs" --negatives-on "$where" --materialise --max-steps "$STEPS" --epochs 1000 \
        --threads 1 --no-progress >"$work/run-$name.out" 2>&1 ||
        { echo "scaling.sh: run $name failed:" >&2; tail -20 "$work/run-$name.out" >&2; exit 1; }
    local exs=0 wire=0 ex=0 secs=0 wrss=0
    for w in 0 1; do
        local f=$logs/worker-$w.log
        exs=$(awk -v a="$exs" -v b="$(num "$f" step_examples_per_sec)" 'BEGIN{print a+b}')
        wire=$(awk -v a="$wire" -v b="$(num "$f" step_wire_bytes)" 'BEGIN{print a+b}')
        ex=$(awk -v a="$ex" -v b="$(num "$f" examples)" 'BEGIN{print a+b}')
        secs=$(awk -v a="$secs" -v b="$(num "$f" step_seconds)" 'BEGIN{print (b>a)?b:a}')
        wrss=$(awk -v a="$wrss" -v b="$(num "$f" peak_rss_mb)" 'BEGIN{print (b>a)?b:a}')
    done
    local rows=0 bpr=0 srss=0 pulled=0 pushed=0
    for s in 0 1; do
        local f=$logs/server-$s.log
        local line
        line=$(grep "table 0:" "$f" | tail -1)
        rows=$(awk -v a="$rows" -v b="$(echo "$line" | awk '{print $5}')" 'BEGIN{print a+b}')
        bpr=$(echo "$line" | grep -o '[0-9.]* bytes/row' | awk '{print $1}')
        srss=$(awk -v a="$srss" -v b="$(grep -o 'peak memory [0-9.]*' "$f" | awk '{print $3}')" 'BEGIN{print (b>a)?b:a}')
        pulled=$(awk -v a="$pulled" -v b="$(grep -o '[0-9]* rows pulled' "$f" | awk '{print $1}')" 'BEGIN{print a+b}')
        pushed=$(awk -v a="$pushed" -v b="$(grep -o '[0-9]* pushed;' "$f" | awk '{print $1}')" 'BEGIN{print a+b}')
    done
    local mat
    mat=$(grep -ho 'materialised [0-9]* catalogue rows in [0-9.]* s' "$logs"/worker-*.log | awk '{t=$6>t?$6:t} END{print t+0}')
    awk -v exs="$exs" -v wire="$wire" -v ex="$ex" -v secs="$secs" -v rows="$rows" -v bpr="$bpr" -v srss="$srss" \
        -v wrss="$wrss" -v pulled="$pulled" -v pushed="$pushed" -v mat="$mat" 'BEGIN{
        printf "%.0f\t%.0f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\n", exs, rows, bpr, srss, wrss,
               (secs > 0 ? pulled / secs : 0), (secs > 0 ? pushed / secs : 0), (ex > 0 ? wire / ex : 0), mat }'
}

mkdir -p "$OUT/img"
items_tsv=$OUT/scaling-items.tsv
echo -e "items\twhere\tex_per_s\trows\tbytes_per_row\tserver_peak_mb\tworker_peak_mb\tpull_rows_per_s\tpush_rows_per_s\twire_bytes_per_ex\tmaterialise_s" >"$items_tsv"
declare -A base=()
for n in $ITEMS; do
    d=$(data "$n")
    for where in $WHERE; do
        row=$(run "items-$n-$where" "$d" "$where" "$S")
        echo -e "$n\t$where\t$row" >>"$items_tsv"
        exs=$(echo "$row" | cut -f1)
        [ -z "${base[$where]:-}" ] && base[$where]=$exs
        echo "items $n, negatives on $where: $(echo "$row" | awk -F'\t' '{printf "%s ex/s, %s rows held, %s B/row, server peak %s MB, worker peak %s MB, pull %s rows/s, push %s rows/s, %s wire B/ex, materialised in %s s", $1,$2,$3,$4,$5,$6,$7,$8,$9}'); ex/s vs the first size $(awk -v a="$exs" -v b="${base[$where]}" 'BEGIN{printf "%.2fx", a/b}')"
    done
done

neg_tsv=$OUT/scaling-negatives.tsv
echo -e "negatives\twhere\tex_per_s\twire_bytes_per_ex" >"$neg_tsv"
d=$(data "$NEG_ITEMS")
for s in $NEGS; do
    declare -A r=()
    for where in workers servers; do
        row=$(run "neg-$s-$where" "$d" "$where" "$s")
        r[$where]=$row
        echo -e "$s\t$where\t$(echo "$row" | cut -f1)\t$(echo "$row" | cut -f8)" >>"$neg_tsv"
    done
    echo "negatives $s: on workers $(echo "${r[workers]}" | cut -f1) ex/s $(echo "${r[workers]}" | cut -f8) B/ex; on servers $(echo "${r[servers]}" | cut -f1) ex/s $(echo "${r[servers]}" | cut -f8) B/ex; servers/workers ex/s $(awk -v a="$(echo "${r[servers]}" | cut -f1)" -v b="$(echo "${r[workers]}" | cut -f1)" 'BEGIN{printf "%.2fx", a/b}'), bytes $(awk -v a="$(echo "${r[servers]}" | cut -f8)" -v b="$(echo "${r[workers]}" | cut -f8)" 'BEGIN{printf "%.3fx", a/b}')"
done

if command -v gnuplot >/dev/null; then
    gnuplot <<EOF
set terminal pngcairo size 900,420 font ",10"
set output "$OUT/img/scaling-items.png"
set multiplot layout 1,2 title "2 servers x 2 workers, d=32, f16 rows, $S negatives per batch, every catalogue row materialised"
set logscale x
set xlabel "catalogue items (rows held)"
set ylabel "examples/s (training steps)"
set yrange [0:*]
set key bottom left
set grid
plot "< grep servers $items_tsv" using 1:3 with linespoints pt 5 title "negatives on servers", \
     "< grep workers $items_tsv" using 1:3 with linespoints pt 7 title "negatives on workers"
set ylabel "peak memory per server (MB)"
set logscale y
set yrange [*:*]
set key top left
plot "< grep servers $items_tsv" using 1:6 with linespoints pt 5 title "negatives on servers", \
     "< grep workers $items_tsv" using 1:6 with linespoints pt 7 title "negatives on workers"
unset multiplot
set output "$OUT/img/scaling-negatives.png"
set multiplot layout 1,2 title "negatives per batch: drawn by the workers vs by the servers ($NEG_ITEMS items)"
set xlabel "negatives per batch"
set key top right
unset logscale y
set yrange [0:*]
set ylabel "examples/s"
plot "< grep workers $neg_tsv" using 1:3 with linespoints pt 7 title "on workers", \
     "< grep servers $neg_tsv" using 1:3 with linespoints pt 5 title "on servers"
set ylabel "bytes on the wire per example"
set logscale y
set yrange [*:*]
set key top left
plot "< grep workers $neg_tsv" using 1:4 with linespoints pt 7 title "on workers", \
     "< grep servers $neg_tsv" using 1:4 with linespoints pt 5 title "on servers"
unset multiplot
EOF
    echo "plots: $OUT/img/scaling-items.png $OUT/img/scaling-negatives.png"
fi
echo "tables: $items_tsv $neg_tsv"
