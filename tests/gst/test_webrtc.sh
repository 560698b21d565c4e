#!/bin/bash
# WebRTC: `anitalker webrtc` (webrtcbin, VP8 + Opus, the tiny chain models,
# a live test source) serves its page on 127.0.0.1; headless Chromium opens
# it, answers the offer and reports getStats() back; the program exits 0
# once the page has decoded 50 video frames.  Then several pages against one
# server (below).  Skipped (77) without Chromium.
# usage: test_webrtc.sh ANITALKER_BIN DATA_DIR
set -eu
bin=$1 data=$2
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "no chromium: skipped"; exit 77; }
gst-inspect-1.0 nicesrc >/dev/null 2>&1 || { echo "no libnice GStreamer plugin (gstreamer1.0-nice): skipped"; exit 77; }
"$bin" --help | grep -q webrtc || { echo "anitalker built without webrtcbin's headers: skipped"; exit 77; }
work=$(mktemp -d)
server= browser_pid=
cleanup() {
  [ -n "$browser_pid" ] && kill "$browser_pid" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
. "$(dirname "$0")/../webrtc_util.sh"
# Chromium hides host candidates behind mDNS names by default, which
# webrtcbin cannot resolve: that feature is off here.
open_page() {  # open_page PROFILE
  "$browser" --headless=new --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-default-apps --disable-sync --no-first-run --autoplay-policy=no-user-gesture-required \
    --disable-features=WebRtcHideLocalIpsWithMdns --user-data-dir="$work/$1" \
    "http://127.0.0.1:$port/" >"$work/$1.log" 2>&1 &
}
# A free port the system picks (--port 0), read from the server's
# "open http://..." line: a port of our own choosing may be taken.
"$bin" webrtc --portrait "$data/renderer/monalisa.jpg" --test-source --models-dir "$data/chain" --steps 10 \
  --latency low --port 0 --frames 50 --timeout 120 >"$work/server.log" 2>&1 &
server=$!
wait_for_port "$work/server.log"
open_page page
browser_pid=$!
status=0
wait "$server" || status=$?
server=
cat "$work/server.log"
[ $status -eq 0 ] || { echo "the page did not decode 50 frames (exit $status)"; tail -20 "$work/page.log"; exit 1; }
grep -q "answer received" "$work/server.log"
# The first frame's delay at the low preset, as the server saw it.
grep "first video frame out of the chain" "$work/server.log" || { echo "no first-frame time reported"; exit 1; }
grep "the page had decoded video" "$work/server.log" || true
kill "$browser_pid" 2>/dev/null || true
wait "$browser_pid" 2>/dev/null || true
browser_pid=

# Several viewers (found 2026-12-07: one session per run, a reload or a
# second viewer got 409 and no video).  --max-viewers 2: two pages both
# decode video; a third is refused (503) and says so; the first page's
# browser is killed (no goodbye), its viewer ends once its page has been
# quiet for --viewer-timeout 10 s while the second goes on; a page opened
# then takes the freed place and decodes video.  A server without --frames, stopped at the
# end.
"$bin" webrtc --portrait "$data/renderer/monalisa.jpg" --test-source --models-dir "$data/chain" --steps 10 \
  --latency low --port 0 --max-viewers 2 --viewer-timeout 10 >"$work/many.log" 2>&1 &
server=$!
wait_for_port "$work/many.log"
# wait_for PATTERN [TENTHS]: until the log has a line matching PATTERN (30 s)
wait_for() {
  for i in $(seq "${2:-300}"); do grep -q "$1" "$work/many.log" && return 0; sleep 0.1; done
  echo "not seen within $(( ${2:-300} / 10 )) s: $1"; tail -20 "$work/many.log"; exit 1
}
decoding='page: video frames [1-9][0-9]* '
open_page first
first=$!
wait_for "viewer 1: $decoding"
open_page second
browser_pid=$!
wait_for "viewer 2: $decoding"
open_page third
third=$!
wait_for "page: error the server refused a session (503): 2 viewers are watching, as many as --max-viewers 2 allows"
kill "$third" "$first" 2>/dev/null || true
wait "$third" "$first" 2>/dev/null || true
wait_for "viewer 1: ended: its page asked nothing for 10 s (1 watching)" 200
# The second viewer after the first one's end: still decoding, more frames.
before=$(grep -o "viewer 2: page: video frames [0-9]*" "$work/many.log" | tail -n 1 | grep -o "[0-9]*$")
sleep 2
after=$(grep -o "viewer 2: page: video frames [0-9]*" "$work/many.log" | tail -n 1 | grep -o "[0-9]*$")
[ "$after" -gt "$before" ] || { echo "the second viewer stopped with the first: $before -> $after frames"; exit 1; }
open_page fourth
fourth=$!
wait_for "viewer 3: $decoding"
kill "$fourth" "$browser_pid" 2>/dev/null || true
wait "$fourth" "$browser_pid" 2>/dev/null || true
browser_pid=
kill -TERM "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=
grep -E "joined|ended|refused" "$work/many.log"
echo "viewer 2: frames $before when the first ended, $after two seconds later"
echo ok
