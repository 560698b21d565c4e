#!/bin/sh
# Speech file + portrait -> MP4 (H.264 + AAC, audio in sync), offline (exact).
# usage: pipelines/file-to-mp4.sh SPEECH PORTRAIT OUT.mp4 [MODELS_DIR] [extra anitalker properties...]
# The same job as `anitalker generate`, as one gst-launch line:
#
#   gst-launch-1.0 -e filesrc location=SPEECH ! decodebin ! tee name=t \
#     t. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! anitalker models-dir=models portrait=PORTRAIT \
#        ! videoconvert ! x264enc ! h264parse ! queue ! mux.video_0 \
#     t. ! queue ! audioconvert ! audioresample ! avenc_aac ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 \
#        ! mux.audio_0 \
#     mp4mux name=mux faststart=true ! filesink location=OUT.mp4
#
# Offline, the bin outputs video only at the end of the speech, so the queues
# around it are unlimited: the audio branch must not wait for the video.
set -eu
[ $# -ge 3 ] || { sed -n '2,3p' "$0"; exit 2; }
speech=$1 portrait=$2 out=$3 models=${4:-models}
shift $(( $# < 4 ? $# : 4 ))
exec gst-launch-1.0 -e filesrc location="$speech" ! decodebin ! tee name=t \
  t. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 \
     ! anitalker models-dir="$models" portrait="$portrait" mode=offline "$@" \
     ! videoconvert ! video/x-raw,format=I420 ! x264enc ! h264parse ! queue ! mux.video_0 \
  t. ! queue ! audioconvert ! audioresample ! avenc_aac ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 \
     ! mux.audio_0 \
  mp4mux name=mux faststart=true ! filesink location="$out"
