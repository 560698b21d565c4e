#!/bin/bash
# Live: a live audio source (audiotestsrc is-live=true) through the chain in
# streaming mode (tiny chain models) into rtmp2sink, pushing to an nginx-rtmp
# on 127.0.0.1 that this test starts and stops.  A reader (ffprobe) plays the
# stream back while it is live and the test checks: H.264 at 25 fps,
# audio and video starting within 100 ms of each other, and how long the
# first video frame took to reach the reader from the publisher's start
# (printed; model loading included; bounded by 30 s).  The reader decodes every
# frame (ffprobe -show_entries frame=...), so "decodable" is checked too.
# Then pipelines/live-rtmp.sh through a restart of the server (below).
# Skipped (exit 77) without nginx's RTMP module.
# usage: test_live_rtmp.sh DATA_DIR
set -eu
data=$1
module=/usr/lib/nginx/modules/ngx_rtmp_module.so
command -v nginx >/dev/null && [ -f "$module" ] || { echo "no nginx with the RTMP module: skipped"; exit 77; }
work=$(mktemp -d)
nginx_pid=
pub_pid=
cleanup() {
  [ -n "$pub_pid" ] && kill "$pub_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A port unlikely to be taken: from the process id.
port=$((20000 + $$ % 20000))
mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
load_module $module;
daemon off;
master_process off;
pid $work/nginx.pid;
error_log $work/logs/error.log info;
events { worker_connections 64; }
rtmp {
  server {
    listen 127.0.0.1:$port;
    application live { live on; record off; }
  }
}
CONF
nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
for i in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
url="rtmp://127.0.0.1:$port/live/avatar"

start=$(date +%s.%N)
# flvmux waits up to 10 s for late video: the chain's compute time must fit
# in the pipeline's latency plus this, or the muxer clamps late frames'
# timestamps (on a loaded 2-core machine 2 s and 5 s were not enough: the
# last windows are computed after the audio's EOS).  A live sink delays
# everything by the pipeline's latency, so the first frame arrives after
# about that long.
# 8 s of live audio at the low latency preset (hops of 120 ms).
gst-launch-1.0 -q -e audiotestsrc is-live=true wave=pink-noise volume=0.3 num-buffers=80 samplesperbuffer=1600 \
  ! audio/x-raw,rate=16000,channels=1 ! tee name=t \
  t. ! queue ! anitalker models-dir="$data/chain" portrait="$data/renderer/monalisa.jpg" mode=streaming steps=10 \
       latency=low \
     ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency key-int-max=25 ! h264parse ! queue ! mux. \
  t. ! queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0 ! audioconvert ! audioresample \
     ! avenc_aac ! aacparse ! queue ! mux. \
  flvmux name=mux streamable=true latency=10000000000 ! rtmp2sink location="$url" >"$work/pub.log" 2>&1 &
pub_pid=$!

# The reader: every packet with the wall time it arrived.
mkfifo "$work/fifo"
while IFS= read -r line; do echo "$(date +%s.%N),$line"; done <"$work/fifo" >"$work/packets.csv" &
stamper=$!
ffprobe -v error -rw_timeout 20000000 -fflags nobuffer -analyzeduration 100000 -probesize 4096 -i "$url" -show_entries frame=media_type,stream_index,pts_time \
  -of csv=p=0 >"$work/fifo" 2>"$work/probe.err" &
reader=$!
wait "$pub_pid" || { cat "$work/pub.log"; echo "the publisher failed"; exit 1; }
pub_pid=
sleep 2
kill "$reader" 2>/dev/null || true
wait "$reader" "$stamper" 2>/dev/null || true

[ -s "$work/packets.csv" ] || { cat "$work/probe.err" "$work/pub.log"; echo "the reader got nothing"; exit 1; }
awk -F, -v start="$start" '
  $2 == "video" {
    v++; if (!fv) { fv = $1; v0 = $4 }
    if (v > 1 && ($4 - vl < 0.039 || $4 - vl > 0.041)) { print "video pts " vl " then " $4 ": not 40 ms apart"; bad = 1 }
    vl = $4
  }
  $2 == "audio" { a++; if (!fa) a0 = $4; fa = 1 }
  END {
    if (bad) exit 1
    if (v < 50) { print "only " v " decoded video frames"; exit 1 }
    rate = (v - 1) / (vl - v0)
    printf "video: %d decoded frames, %.2f fps; audio: %d decoded frames; first video frame after %.2f s\n", v, rate, a, fv - start
    printf "stream start: video %.3f s, audio %.3f s\n", v0, a0
    if (rate < 24.5 || rate > 25.5) { print "expected 25 fps"; exit 1 }
    d = v0 - a0; if (d < 0) d = -d
    if (d > 0.1) { print "audio and video start " d " s apart"; exit 1 }
    if (fv - start > 30) { print "the first frame took too long"; exit 1 }
  }' "$work/packets.csv"

# pipelines/live-rtmp.sh with a live source starts the stream again when it
# stops on an error: the RTMP server killed (as a crash) and started again
# 3 s later, the script publishes again by itself; SIGTERM then ends it (exit
# 0, gst-launch ended by EOS, none left).  Until 2026-12-07 the script
# exec'd gst-launch, and a broadcast ended at the ingest's first restart.
stream="restart$$"
RESTART_SECONDS=1 sh "$(dirname "$0")/../../pipelines/live-rtmp.sh" "$data/renderer/monalisa.jpg" \
  "rtmp://127.0.0.1:$port/live/$stream" "$data/chain" test >"$work/script.log" 2>&1 &
pub_pid=$!
published() { grep -c "publish: name='$stream'" "$work/logs/error.log" || true; }
for i in $(seq 300); do [ "$(published)" -ge 1 ] && break; sleep 0.1; done
[ "$(published)" -ge 1 ] || { cat "$work/script.log"; echo "the script did not publish"; exit 1; }
sleep 1
kill -9 "$nginx_pid"
wait "$nginx_pid" 2>/dev/null || true
sleep 3
nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
for i in $(seq 300); do [ "$(published)" -ge 2 ] && break; sleep 0.1; done
grep "live-rtmp.sh: the stream stopped" "$work/script.log" || true
[ "$(published)" -ge 2 ] || { tail -20 "$work/script.log"; echo "the script did not publish again"; exit 1; }
grep -q "live-rtmp.sh: the stream stopped (gst-launch-1.0 exit 1); starting again in 1 s" "$work/script.log" ||
  { tail -20 "$work/script.log"; echo "the restart was not said"; exit 1; }
# The stop comes right after the new stream published, i.e. while the
# bin's elements start (sinks start first): a SIGINT then reached a
# gst-launch that had it ignored until its main loop ran, and before
# 2026-12-07 the script waited for ever.
kill -TERM "$pub_pid"
for i in $(seq 100); do kill -0 "$pub_pid" 2>/dev/null || break; sleep 0.1; done
status=0
wait "$pub_pid" || status=$?
pub_pid=
[ $status -eq 0 ] || { tail -20 "$work/script.log"; echo "SIGTERM: the script exited $status"; exit 1; }
grep -q "EOS on shutdown" "$work/script.log" || { tail -20 "$work/script.log"; echo "gst-launch was not ended by EOS"; exit 1; }
if pgrep -f "live/$stream" >/dev/null; then echo "a gst-launch of the script is left"; exit 1; fi
echo "restart: published $(published) times, ended by SIGTERM"
echo ok
