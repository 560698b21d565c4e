#!/bin/sh
# A live talking avatar to an RTMP server (nginx-rtmp, YouTube, Twitch, ...):
# live audio through the chain in streaming mode, H.264 + AAC in FLV.
# usage: pipelines/live-rtmp.sh PORTRAIT RTMP_URL [MODELS_DIR] [SOURCE]
#   SOURCE: "pulse" (pulsesrc, default), "alsa" (alsasrc), "test" (a live
#   test tone), or a speech file played in real time (filesrc ! decodebin !
#   identity sync=true: a demo without a microphone).
#   With a live source the stream starts again when it stops on an error (the
#   RTMP server restarted, the network dropped): after RESTART_SECONDS (2,
#   doubling up to 30 while it keeps failing within a minute; 0 = exit
#   instead).  Ctrl-C or SIGTERM end it.
#
#   gst-launch-1.0 pulsesrc ! audio/x-raw,rate=16000,channels=1 ! tee name=t \
#     t. ! queue ! anitalker models-dir=models portrait=PORTRAIT mode=streaming latency=low \
#        ! videoconvert ! x264enc tune=zerolatency key-int-max=50 ! h264parse ! queue ! mux. \
#     t. ! queue max-size-time=10000000000 ! audioconvert ! audioresample ! avenc_aac ! aacparse ! queue ! mux. \
#     flvmux name=mux streamable=true latency=2000000000 ! rtmp2sink location=RTMP_URL
#
# The audio branch's queue holds the audio for as long as the chain's latency
# (at latency=low, hubertenc's 120 ms hop and its look-ahead plus the
# networks' compute time: about 0.2 s with cheap networks), so that the
# muxer gets both in step: see docs/streaming.md.
# On 2 CPU cores the full-size models run slower than real time; a GPU build
# (-Dtorch_root=... -Dcuda=enabled, docs/building.md) is what live use needs.
set -eu
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
portrait=$1 url=$2 models=${3:-models} source=${4:-pulse}
restart=${RESTART_SECONDS:-2}
case "$restart" in '' | *[!0-9]*) echo "live-rtmp.sh: RESTART_SECONDS must be a whole number of seconds, not '$restart'" >&2; exit 2 ;; esac
# The source's elements as words of their own (no eval: a path holding
# quotes, $(...) or backquotes stays a path); gst-launch quotes each word.
live=1
case "$source" in
  pulse) set -- pulsesrc ;;
  alsa) set -- alsasrc ;;
  test) set -- audiotestsrc is-live=true wave=pink-noise volume=0.3 ;;
  *) set -- filesrc location="$source" ! decodebin ! audioconvert ! audioresample ! identity sync=true; live=0 ;;
esac
run() {
  exec gst-launch-1.0 -e "$@" ! audio/x-raw,rate=16000,channels=1 ! tee name=t \
  t. ! queue ! anitalker models-dir="$models" portrait="$portrait" mode=streaming latency=low \
     ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency key-int-max=50 ! h264parse ! queue ! mux. \
  t. ! queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0 ! audioconvert ! audioresample \
     ! avenc_aac ! aacparse ! queue ! mux. \
  flvmux name=mux streamable=true latency=2000000000 ! rtmp2sink location="$url"
}
# A file plays once; so does a live source with RESTART_SECONDS=0.
[ "$live" = 0 ] || [ "$restart" = 0 ] && run "$@"
# A live source: gst-launch runs in the background so that a signal reaches
# this loop, which passes it on (SIGINT: gst-launch sends EOS and ends) and
# stops.  An exit 0 is an end that was asked for; anything else is a failure,
# and the stream starts again after a pause that doubles (to 30 s) while the
# runs keep failing within a minute of their start.
stop=0 child= nag= pause=$restart
trap 'stop=1; [ -n "$child" ] && kill -INT "$child" 2>/dev/null' INT TERM
while :; do
  started=$(date +%s)
  run "$@" &
  child=$!
  status=0
  wait "$child" || status=$?
  while kill -0 "$child" 2>/dev/null; do
    # gst-launch takes SIGINT (EOS, then exit) only once its main loop runs,
    # after the elements have loaded their models and warmed up; until then
    # it has SIGINT ignored, as every background job of a script starts, and
    # a stop asked for during a start was lost (the script then waited for
    # ever).  So once a stop is asked for, SIGINT again every second until
    # it ends.
    if [ "$stop" = 1 ] && [ -z "$nag" ]; then
      pid=$child
      ( while kill -0 "$pid" 2>/dev/null; do sleep 1; kill -INT "$pid" 2>/dev/null; done ) &
      nag=$!
    fi
    status=0
    wait "$child" || status=$?
  done
  child=
  [ -n "$nag" ] && { kill "$nag" 2>/dev/null || true; wait "$nag" 2>/dev/null || true; nag=; }
  [ "$stop" = 1 ] && exit 0
  [ "$status" = 0 ] && exit 0
  if [ $(( $(date +%s) - started )) -ge 60 ]; then pause=$restart; fi
  echo "live-rtmp.sh: the stream stopped (gst-launch-1.0 exit $status); starting again in $pause s" >&2
  sleep "$pause" &
  wait $! || true
  [ "$stop" = 1 ] && exit 0
  pause=$(( pause * 2 > 30 ? 30 : pause * 2 ))
done
