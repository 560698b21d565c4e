#!/bin/sh
# End to end with gst-launch-1.0: a raw file of motion codes through
# anitalkerrender into raw RGB frames; the bytes must equal what
# `anitalker render` writes for the same codes.
# usage: test_launch_render.sh ANITALKER_BIN DATA_DIR
set -eu
bin=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ckpt=$data/renderer/tiny_lia.ckpt
face=$data/renderer/monalisa.jpg
npy=$data/renderer/motions.npy

# The payload of a .npy file: skip 10 bytes and the header length (bytes 8-9).
payload() {
  hlen=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' ')
  tail -c +$((10 + hlen + 1)) "$1"
}
payload "$npy" > "$work/motions.f32"   # 3 frames x 20 float32

gst-launch-1.0 -q filesrc location="$work/motions.f32" blocksize=80 \
  ! "application/x-anitalker-motion,dims=20,framerate=25/1" \
  ! anitalkerrender checkpoint="$ckpt" portrait="$face" \
  ! "video/x-raw,format=RGB,width=256,height=256,framerate=25/1" \
  ! filesink location="$work/launch.rgb"

"$bin" render --stage1 "$ckpt" --portrait "$face" --motion "$npy" --out "$work/cli.npy" 2>/dev/null
payload "$work/cli.npy" > "$work/cli.rgb"

size=$(wc -c < "$work/launch.rgb")
[ "$size" -eq $((3 * 256 * 256 * 3)) ] || { echo "gst-launch wrote $size bytes, expected 3 frames of 256x256 RGB"; exit 1; }
cmp "$work/launch.rgb" "$work/cli.rgb"
echo "gst-launch and anitalker render agree on $size bytes"
