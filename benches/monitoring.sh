#!/usr/bin/env bash
# What monitoring costs, measured (not asserted anywhere):
#  1. `shmq bench` streaming throughput (shmq only) with and without `shmq exporter` running
#     and scraped every second, RUNS runs of each, alternating; the medians and their ratio.
#  2. The time to scrape QUEUES queues (each with a live consumer, a subscription and
#     messages waiting): the exporter's own shmq_exporter_scrape_duration_seconds and the
#     client's wall time for the whole HTTP request, SCRAPES scrapes; median and largest.
#
# Usage: cargo build --release --features cli && bash benches/monitoring.sh
# Environment: SHMQ (binary, default target/release/shmq), RUNS (5), SIZE (64),
# WAITS (spin,block), QUEUES (100), SCRAPES (20). RUNS=0 skips part 1. Needs curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHMQ:-target/release/shmq}
RUNS=${RUNS:-5}
SIZE=${SIZE:-64}
WAITS=${WAITS:-spin,block}
QUEUES=${QUEUES:-100}
SCRAPES=${SCRAPES:-20}
TMP=$(mktemp -d)
PIDS=()
PREFIX="monbench-$$"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq 1 "$QUEUES"); do "$BIN" rm "$PREFIX-$i" >/dev/null 2>&1 || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

start_exporter() {
  "$BIN" exporter --listen 127.0.0.1:0 "$@" >"$TMP/exporter.out" 2>"$TMP/exporter.err" &
  EXPORTER=$!
  PIDS+=("$EXPORTER")
  for _ in $(seq 1 600); do
    if [ -s "$TMP/exporter.out" ]; then break; fi
    sleep 0.05
  done
  URL=$(sed -n 's/^shmq exporter: serving //p' "$TMP/exporter.out")
  if [ -z "$URL" ]; then
    echo "the exporter did not start: stderr $(cat "$TMP/exporter.err"), stdout $(cat "$TMP/exporter.out"), $(grep State /proc/"$EXPORTER"/status 2>&1)" >&2
    exit 1
  fi
}

if [ "$RUNS" -gt 0 ]; then
echo "== 1. bench throughput, size $SIZE, waits $WAITS: $RUNS runs without and $RUNS with an exporter scraped every second"
for run in $(seq 1 "$RUNS"); do
  for mode in none scraped; do
    if [ "$mode" = scraped ]; then
      start_exporter
      ( while true; do curl -s -o /dev/null "$URL"; sleep 1; done ) &
      SCRAPER=$!
      PIDS+=("$SCRAPER")
    fi
    until "$BIN" bench --transport shmq --wait "$WAITS" --size "$SIZE" --rounds 3 --json "$TMP/b.json" \
      >"$TMP/bench.out" 2>&1; do
      echo "  run $run ($mode): the bench failed, again: $(tail -1 "$TMP/bench.out")"
    done
    jq -r '.results[] | select(.transport == "shmq") | "\(.wait) \(.throughput_msgs_per_s)"' "$TMP/b.json" |
      while read -r wait tput; do echo "$tput" >>"$TMP/$mode-$wait"; done
    if [ "$mode" = scraped ]; then
      scrapes=$(curl -s "$URL" | awk '/^shmq_exporter_scrapes_total/ {print $2}' || true)
      kill "$SCRAPER" "$EXPORTER"; wait "$SCRAPER" "$EXPORTER" 2>/dev/null || true
      echo "  run $run: exporter served $scrapes scrapes during the bench"
    fi
  done
done
IFS=, read -ra waits <<<"$WAITS"
for w in "${waits[@]}"; do
  a=$(median <"$TMP/none-$w"); b=$(median <"$TMP/scraped-$w")
  echo "  wait $w: msgs/s without: $(paste -sd' ' "$TMP/none-$w")"
  echo "  wait $w: msgs/s scraped: $(paste -sd' ' "$TMP/scraped-$w")"
  awk -v a="$a" -v b="$b" -v w="$w" 'BEGIN {printf "  wait %s: median without %.4g msgs/s, with %.4g msgs/s: ratio %.3f (%+.1f%%)\n", w, a, b, b/a, (b/a-1)*100}'
  # Each run with the exporter against the run just before it without: drift in the
  # machine's load between runs far apart cancels out.
  pr=$(paste "$TMP/none-$w" "$TMP/scraped-$w" | awk '{print $2/$1}' | median)
  echo "  wait $w: median of the $RUNS paired ratios (scraped / without, run by run): $pr"
done

fi

echo "== 2. scraping $QUEUES queues (each: a live consumer, a subscription, 10 messages waiting)"
for i in $(seq 1 "$QUEUES"); do
  q="$PREFIX-$i"
  "$BIN" create "$q" --capacity 64KiB --max-message 1KiB >/dev/null
  "$BIN" subs create "$q" audit >/dev/null
  "$BIN" recv "$q" --follow >/dev/null &
  PIDS+=("$!")
done
for i in $(seq 1 "$QUEUES"); do
  "$BIN" send "$PREFIX-$i" 1 2 3 4 5 6 7 8 9 10 >/dev/null
done
# Named, so that exactly these queues are read (other queues on the host are not counted).
# shellcheck disable=SC2046
start_exporter $(seq -f "$PREFIX-%g" 1 "$QUEUES")
: >"$TMP/server"; : >"$TMP/client"
for _ in $(seq 1 "$SCRAPES"); do
  curl -s -o "$TMP/m" -w '%{time_total}\n' "$URL" >>"$TMP/client"
  awk '/^shmq_exporter_scrape_duration_seconds/ {print $2}' "$TMP/m" >>"$TMP/server"
  sleep 0.2
done
n=$(awk '/^shmq_exporter_queues / {print $2}' "$TMP/m")
# The exporter's CPU time (user + system, clock ticks) over its life: SCRAPES scrapes plus a
# look every second between them.
ticks=$(awk '{print $14 + $15}' /proc/"$EXPORTER"/stat)
hz=$(getconf CLK_TCK)
lines=$(wc -l <"$TMP/m")
echo "  queues in a scrape: $n; exposition: $lines lines, $(wc -c <"$TMP/m") bytes"
echo "  exporter's reading time (s): median $(median <"$TMP/server"), largest $(sort -g "$TMP/server" | tail -1)"
echo "  HTTP request, client wall time (s): median $(median <"$TMP/client"), largest $(sort -g "$TMP/client" | tail -1)"
awk -v t="$ticks" -v hz="$hz" -v n="$SCRAPES" 'BEGIN {printf "  exporter CPU time: %.3f s over %d scrapes (and its looks between them): %.1f ms a scrape\n", t/hz, n, t/hz/n*1000}'
