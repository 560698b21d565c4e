#!/bin/sh
# Runs a libFuzzer target for a few seconds over its committed corpus.
# New inputs go to a temporary folder (the committed corpus is not touched);
# a crash leaves its input in the build folder under fuzz-artifacts/.
# usage: run_fuzzer.sh FUZZER CORPUS SECONDS ARTIFACT_DIR
set -eu
fuzzer=$1 corpus=$2 seconds=$3 artifacts=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$corpus"
