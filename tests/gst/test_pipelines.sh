#!/bin/sh
# The scripts of pipelines/ as a user runs them, with file names a hostile
# user (or an upload) may bring: spaces, quotes, $(...) and backquotes must
# stay part of the name.  Until 2026-12-06 live-rtmp.sh built its pipeline
# with eval: such a portrait or speech name ran its commands.
# file-to-mp4.sh: the MP4 of the 2 s clip (check_mp4: 52 frames, AAC in
# step).  live-rtmp.sh: a speech file as the source, to an RTMP address where
# nothing listens (the test needs no server): it fails, and runs nothing
# from the names.
# usage: test_pipelines.sh SOURCE_DIR DATA_DIR
set -eu
src=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
. "$src/tests/gst/check_mp4.sh"  # check_mp4 FILE VIDEO_FRAMES (uses $work)

face='face "q" $(touch pwned) `touch pwned2`.jpg'
speech='speech $(touch pwned3) it'"'"'s.wav'
cp "$data/renderer/monalisa.jpg" "$face"
cp "$data/audio/speech_2s_16k.wav" "$speech"

sh "$src/pipelines/file-to-mp4.sh" "$speech" "$face" "out put.mp4" "$data/chain" steps=10 >file.log 2>&1 ||
  { cat file.log; echo "FAIL: file-to-mp4.sh"; exit 1; }
check_mp4 "out put.mp4" 52

if timeout 120 sh "$src/pipelines/live-rtmp.sh" "$face" rtmp://127.0.0.1:1/live/x "$data/chain" "$speech" \
     >live.log 2>&1; then
  cat live.log; echo "FAIL: live-rtmp.sh succeeded with nothing listening"; exit 1
fi
grep -q "rtmp2sink" live.log || { cat live.log; echo "FAIL: live-rtmp.sh failed, but not at the sink"; exit 1; }
for f in pwned pwned2 pwned3; do
  [ ! -e "$f" ] || { echo "FAIL: a script ran a command from a file name ($f was made)"; exit 1; }
done
echo ok
