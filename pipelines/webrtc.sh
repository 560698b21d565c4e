#!/bin/sh
# The talking portrait in a browser over WebRTC (webrtcbin; webrtcsink is not
# in Debian 12).  `anitalker webrtc` runs the chain in streaming mode, serves
# a page on http://ADDRESS:PORT/ and exchanges the offer and answer with it
# over plain HTTP (all ICE candidates in the SDP, no signalling server):
#
#   ... ! tee name=t
#   t. ! queue ! anitalker mode=streaming ... ! videoconvert ! vp8enc deadline=1 ! rtpvp8pay ! tee name=vt
#   t. ! queue ! audioconvert ! audioresample ! opusenc ! rtpopuspay ! tee name=at
#   and for each browser that opens the page (up to --max-viewers, 4):
#   vt. ! queue leaky=downstream ! webrtcbin name=viewerN   at. ! queue leaky=downstream ! viewerN.
#
# usage: pipelines/webrtc.sh PORTRAIT (SPEECH_FILE | --test-source) [MODELS_DIR] [PORT]
# then open http://127.0.0.1:PORT/ (default 8080).  Chromium hides host ICE
# candidates behind mDNS names that webrtcbin cannot resolve: on a LAN use
# --address with the machine's address and a browser with
# --disable-features=WebRtcHideLocalIpsWithMdns, or a TURN/STUN set-up.
set -eu
[ $# -ge 2 ] || { sed -n '13,14p' "$0"; exit 2; }
portrait=$1 source=$2 models=${3:-models} port=${4:-8080}
bin=$(dirname "$0")/../build/tools/anitalker
[ -x "$bin" ] || bin=anitalker
if [ "$source" = "--test-source" ]; then
  exec "$bin" webrtc --portrait "$portrait" --test-source --models-dir "$models" --port "$port"
fi
exec "$bin" webrtc --portrait "$portrait" --audio "$source" --models-dir "$models" --port "$port"
