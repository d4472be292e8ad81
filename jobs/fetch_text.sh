#!/usr/bin/env bash
# Real English text that any Debian machine can obtain: the King James Bible (public domain),
# from Debian's bible-kjv package, verse references stripped, one verse per line.
# WikiText-2 (what the papers report) is on no package registry; tests and benchmarks use the
# copy in ../shared/data. Also writes two disjoint parts for pruning: kjv-calib.txt (verses
# 1..25000, Genesis into Ezekiel) for calibration and kjv-eval.txt (the remaining 6102 verses)
# for evaluation. Prints the path of the whole text on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${SDS_DATA_DIR:-$root/data}
out=$dest/kjv.txt
if [ -s "$out" ] && [ -s "$dest/kjv-eval.txt" ]; then
  echo "$out"
  exit 0
fi
if ! command -v bible >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  echo "fetch_text: installing Debian's bible-kjv" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends bible-kjv >/dev/null
fi
mkdir -p "$dest"
# "Ge1:1 In the beginning ..." -> "In the beginning ..."
bible -f "gen1:1-rev22:21" | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$out.part"
head -n 25000 "$out.part" > "$dest/kjv-calib.txt"
tail -n +25001 "$out.part" > "$dest/kjv-eval.txt"
mv "$out.part" "$out"
echo "$out"
