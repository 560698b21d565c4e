#!/bin/sh
# The GstController example (pipelines/live-pose.cpp): an LFO animates
# anitalkermotion's pose-yaw while the chain streams; the yaw each window
# used (from the element messages) must change over the clip.
# usage: test_live_pose.sh EXAMPLE_BIN DATA_DIR
set -eu
bin=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" "$data/renderer/monalisa.jpg" "$data/audio/speech_2s_16k.wav" "$data/chain" "$work/pose.mp4" | tee "$work/out"
distinct=$(grep -o 'yaw [-0-9.]*' "$work/out" | sort -u | wc -l)
[ "$distinct" -ge 2 ] || { echo "the yaw did not change ($distinct value)"; exit 1; }
[ -s "$work/pose.mp4" ] || { echo "no video written"; exit 1; }
echo ok
