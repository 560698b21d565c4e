#!/bin/sh
# The talking portrait as an SRT stream (MPEG-TS, H.264 + AAC), listening on a
# port for a caller such as `ffplay srt://HOST:PORT` or OBS.
# usage: pipelines/srt.sh PORTRAIT SPEECH_FILE [PORT] [MODELS_DIR]
#
#   gst-launch-1.0 filesrc location=SPEECH ! decodebin ! audioconvert ! audioresample ! clocksync \
#     ! audio/x-raw,rate=16000,channels=1 ! tee name=t \
#     t. ! queue ! anitalker models-dir=models portrait=PORTRAIT mode=streaming ! videoconvert \
#        ! x264enc tune=zerolatency key-int-max=50 ! h264parse config-interval=-1 ! queue ! mux. \
#     t. ! queue max-size-time=10000000000 ! audioconvert ! avenc_aac ! aacparse ! queue ! mux. \
#     mpegtsmux name=mux alignment=7 latency=5000000000 \
#     ! srtsink uri=srt://:PORT mode=listener wait-for-connection=false
#
# alignment=7: each buffer one SRT message of 7 TS packets (1316 bytes);
# larger ones are lost, and with them the keyframes.  config-interval=-1:
# SPS and PPS before every keyframe, so that a caller who joins the running
# stream can decode it.  wait-for-connection=false: the stream runs without
# a caller (a caller joins it live) instead of stalling the pipeline.
set -eu
[ $# -ge 2 ] || { sed -n '4p' "$0"; exit 2; }
portrait=$1 speech=$2 port=${3:-7001} models=${4:-models}
exec gst-launch-1.0 -e filesrc location="$speech" ! decodebin ! audioconvert ! audioresample ! clocksync \
  ! audio/x-raw,rate=16000,channels=1 ! tee name=t \
  t. ! queue ! anitalker models-dir="$models" portrait="$portrait" mode=streaming ! videoconvert \
     ! video/x-raw,format=I420 ! x264enc tune=zerolatency key-int-max=50 ! h264parse config-interval=-1 ! queue ! mux. \
  t. ! queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0 ! audioconvert ! audioresample \
     ! avenc_aac ! aacparse ! queue ! mux. \
  mpegtsmux name=mux alignment=7 latency=5000000000 ! srtsink uri="srt://:$port" mode=listener wait-for-connection=false
