#!/bin/sh
# Fuzzes each target for SECONDS (default 60) with cargo-fuzz (nightly). New inputs go to
# fuzz/work/TARGET (ignored); the committed seeds in fuzz/corpus/TARGET are read only.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-sip_message sdp rtp jitter}
for t in $targets; do
  mkdir -p "work/$t"
  cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=70000
done
