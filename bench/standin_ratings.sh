#!/usr/bin/env bash
# A STAND-IN for a MovieLens ratings file, for exercising `RATINGS=FILE bench/seed_comparison.sh`
# offline (no real MovieLens file is available here). It is NOT MovieLens: it is `psrec gen` data
# (2000 items, 10 categories, 20000 + 2000 users, --seed 7) turned into ml-1m style
# "user::item::rating::timestamp" lines: every line of gen's train.txt and test.txt becomes one user
# (user id = line number), its hist ids then its pos ids become its ratings in that order (timestamps
# 978300000, +1, +2, ... per user), an item the user already rated is dropped (MovieLens rates an item
# once per user), every rating is 4. Gen's labels (region=, _home=) and items.tsv are left out, so the
# file carries what a ratings file carries and nothing more.
# Also writes FILE.about, the label and description seed_comparison.sh prints for the file.
#   bench/standin_ratings.sh [FILE]      (default bench-out/standin/ratings.dat)
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-bench-out/standin/ratings.dat}
bin=${PSREC_BIN:-build/psrec}
test -x $bin || launch/setup.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen="psrec gen --items 2000 --categories 10 --train-users 20000 --test-users 2000 --seed 7"
# shellcheck disable=SC2086
$bin ${gen#psrec } --out "$tmp" >/dev/null 2>&1
mkdir -p "$(dirname "$file")"
cat "$tmp/train.txt" "$tmp/test.txt" | awk '{
  h = ""; p = ""
  for (i = 1; i <= NF; i++) { if ($i ~ /^hist=/) h = substr($i, 6); else if ($i ~ /^pos=/) p = substr($i, 5) }
  n = split(h (h != "" && p != "" ? "," : "") p, it, ","); delete seen; t = 978300000
  for (k = 1; k <= n; k++) if (!(it[k] in seen)) { seen[it[k]] = 1; print NR "::" it[k] "::4::" t++ } }' >"$file"
printf 'STAND-IN, not MovieLens\n%s\n' "A stand-in, not MovieLens: \`$gen\` converted to user::item::rating::timestamp lines by \`bench/standin_ratings.sh\` (one user per gen line, hist then pos in order, repeats dropped, every rating 4, no region or category labels)" >"$file.about"
echo "wrote $file ($(wc -l <"$file") ratings) and $file.about" >&2
