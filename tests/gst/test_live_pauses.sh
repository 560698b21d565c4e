#!/bin/sh
# Speech that comes and goes (a voice agent's replies, docs/streaming.md):
# a live speech source that stops, mixed with live silence by audiomixer,
# keeps the video going at 25 fps with no gap in its timestamps; without
# the silence the video would stop with the speech.
# usage: test_live_pauses.sh DATA_DIR
set -eu
data=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$data/renderer/monalisa.jpg" "$work/face.jpg"
# 8 s of live silence (125 buffers of 1024 samples at 16 kHz), 1.6 s of
# "speech" (a tone) at the start.
gst-launch-1.0 -v audiomixer name=mix latency=100000000 ! audio/x-raw,rate=16000,channels=1 \
  ! anitalker models-dir="$data/chain" portrait="$work/face.jpg" latency=low steps=5 \
  ! fakesink sync=true silent=false \
  audiotestsrc is-live=true wave=silence num-buffers=125 ! audio/x-raw,rate=16000,channels=1 ! mix. \
  audiotestsrc is-live=true wave=sine num-buffers=25 ! audio/x-raw,rate=16000,channels=1 ! mix. \
  > "$work/log" 2>&1 || { tail -20 "$work/log"; echo "the pipeline failed"; exit 1; }
grep 'fakesink0: last-message' "$work/log" | grep -o 'pts: [0-9:.]*' | sed 's/pts: //' > "$work/pts"
n=$(wc -l < "$work/pts")
# Frames 40 ms apart from 0, none missing, none repeated.
bad=$(awk -F: '{ t = $1 * 3600 + $2 * 60 + $3; if (NR == 1 && t != 0) b++; if (NR > 1 && (t - p < 0.0399 || t - p > 0.0401)) b++; p = t } END { print b + 0 }' "$work/pts")
echo "frames $n (200 expected), timestamps off the 40 ms grid: $bad; last $(tail -1 "$work/pts")"
[ "$n" -eq 200 ] || { echo "FAIL: $n frames for 8 s of audio"; exit 1; }
[ "$bad" -eq 0 ] || { echo "FAIL: gaps or repeats in the video's timestamps"; exit 1; }
echo ok
