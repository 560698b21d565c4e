#!/bin/sh
# A live talking avatar to an RTMP server (nginx-rtmp, YouTube, Twitch, ...):
# live audio through the chain in streaming mode, H.264 + AAC in FLV.
# usage: pipelines/live-rtmp.sh PORTRAIT RTMP_URL [MODELS_DIR] [SOURCE]
#   SOURCE: "pulse" (pulsesrc, default), "alsa" (alsasrc), or a speech file
#   played in real time (filesrc ! decodebin ! identity sync=true: a demo
#   without a microphone).
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
[ $# -ge 2 ] || { sed -n '2,7p' "$0"; exit 2; }
portrait=$1 url=$2 models=${3:-models} source=${4:-pulse}
# The source's elements as words of their own (no eval: a path holding
# quotes, $(...) or backquotes stays a path); gst-launch quotes each word.
case "$source" in
  pulse) set -- pulsesrc ;;
  alsa) set -- alsasrc ;;
  *) set -- filesrc location="$source" ! decodebin ! audioconvert ! audioresample ! identity sync=true ;;
esac
exec gst-launch-1.0 -e "$@" ! audio/x-raw,rate=16000,channels=1 ! tee name=t \
  t. ! queue ! anitalker models-dir="$models" portrait="$portrait" mode=streaming latency=low \
     ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency key-int-max=50 ! h264parse ! queue ! mux. \
  t. ! queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0 ! audioconvert ! audioresample \
     ! avenc_aac ! aacparse ! queue ! mux. \
  flvmux name=mux streamable=true latency=2000000000 ! rtmp2sink location="$url"
