#!/bin/bash
# pipelines/srt.sh as a user runs it: the talking portrait (tiny chain
# models, 30 s of speech) as MPEG-TS over SRT, listening for callers.  A
# first caller (ffprobe) decodes video and audio; after it hangs up, a second
# one that joins the running stream decodes video too.  Until 2026-12-07 no
# caller decoded a single video frame: mpegtsmux pushed buffers larger than
# an SRT message (1316 bytes, 7 TS packets) and the keyframes, which carry
# the only SPS/PPS, were lost (now alignment=7 and h264parse
# config-interval=-1).  Skipped (77) without GStreamer's srtsink or an
# ffprobe with SRT.
# usage: test_srt.sh SOURCE_DIR DATA_DIR
set -eu
src=$1 data=$2
gst-inspect-1.0 srtsink >/dev/null 2>&1 || { echo "no srtsink (gstreamer1.0-plugins-bad): skipped"; exit 77; }
ffprobe -v quiet -protocols 2>/dev/null | grep -qx ' *srt' || { echo "no ffprobe with SRT: skipped"; exit 77; }
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
ffmpeg -loglevel error -y -stream_loop 14 -i "$data/audio/speech_2s_16k.wav" -c copy "$work/speech.wav"
# A port unlikely to be taken: from the process id.
port=$((20000 + ($$ * 7) % 20000))
sh "$src/pipelines/srt.sh" "$data/renderer/monalisa.jpg" "$work/speech.wav" "$port" "$data/chain" >"$work/server.log" 2>&1 &
server=$!
# call N SECONDS: a caller that reads for SECONDS and counts decoded frames.
call() {
  timeout "$2" ffprobe -v error -i "srt://127.0.0.1:$port" -show_entries frame=media_type -of csv=p=0 \
    >"$work/call$1.csv" 2>"$work/call$1.err" || true
  video=$(grep -c '^video' "$work/call$1.csv" || true)
  audio=$(grep -c '^audio' "$work/call$1.csv" || true)
  echo "caller $1: $video video frames, $audio audio frames decoded"
  [ "$video" -ge 50 ] && [ "$audio" -ge 20 ] || { tail -5 "$work/call$1.err"; tail -5 "$work/server.log"; exit 1; }
}
call 1 14
sleep 1
call 2 8
kill -INT "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=
echo ok
