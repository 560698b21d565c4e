#!/bin/bash
# WebRTC: `anitalker webrtc` (webrtcbin, VP8 + Opus, the tiny chain models,
# a live test source) serves its page on 127.0.0.1; headless Chromium opens
# it, answers the offer and reports getStats() back; the program exits 0
# once the page has decoded 50 video frames.  Skipped (77) without Chromium.
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
# A free port the system picks (--port 0), read from the server's
# "open http://..." line: a port of our own choosing may be taken.
"$bin" webrtc --portrait "$data/renderer/monalisa.jpg" --test-source --models-dir "$data/chain" --steps 10 \
  --latency low --port 0 --frames 50 --timeout 120 >"$work/server.log" 2>&1 &
server=$!
port=
for i in $(seq 100); do
  port=$(sed -n 's|.*open http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$work/server.log" | head -n 1)
  [ -n "$port" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
[ -n "$port" ] || { echo "the server named no port:"; cat "$work/server.log"; exit 1; }
# Chromium hides host candidates behind mDNS names by default, which
# webrtcbin cannot resolve: that feature is off here.
"$browser" --headless=new --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-default-apps --disable-sync --no-first-run --autoplay-policy=no-user-gesture-required \
  --disable-features=WebRtcHideLocalIpsWithMdns --user-data-dir="$work/profile" \
  "http://127.0.0.1:$port/" >"$work/browser.log" 2>&1 &
browser_pid=$!
status=0
wait "$server" || status=$?
server=
cat "$work/server.log"
[ $status -eq 0 ] || { echo "the page did not decode 50 frames (exit $status)"; tail -20 "$work/browser.log"; exit 1; }
grep -q "answer received" "$work/server.log"
# The first frame's delay at the low preset, as the server saw it.
grep "first video frame out of the chain" "$work/server.log" || { echo "no first-frame time reported"; exit 1; }
grep "the page had decoded video" "$work/server.log" || true
echo ok
