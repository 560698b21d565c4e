#!/bin/sh
# The 44.1 kHz stereo clip through a real pipeline: wavparse ! audioconvert !
# audioresample ! hubertenc, offline, for MFCC and HuBERT.  The frame counts
# follow the resampled length (about 33333 samples at 16 kHz: 207 MFCC
# frames, 103 HuBERT frames + 1 padding frame).
# usage: test_launch_features.sh DATA_DIR
set -eu
data=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
  gst-launch-1.0 -q filesrc location="$data/audio/speech_2s_44k1_stereo.wav" ! wavparse ! audioconvert ! audioresample \
    ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! hubertenc model="$1" mode=offline ! filesink location="$2"
}
run mfcc "$work/mfcc.f32"
frames=$(( $(wc -c < "$work/mfcc.f32") / (39 * 4) ))
[ "$frames" -ge 206 ] && [ "$frames" -le 208 ] || { echo "MFCC: $frames frames, expected about 207"; exit 1; }
echo "MFCC: $frames frames"
run "$data/audio/tiny_hubert" "$work/hubert.f32"
frames=$(( $(wc -c < "$work/hubert.f32") / (4 * 64 * 4) ))
[ "$frames" -eq 104 ] || { echo "HuBERT: $frames frames, expected 104 (103 + padding)"; exit 1; }
echo "HuBERT: $frames frames (4 states x 64)"

# OMP_NUM_THREADS far above what any machine runs (found 2026-12-07): the
# model load in the application's thread made libgomp crash (SIGSEGV);
# every load now sets a team above 256 threads to one per core.  As many
# frames (their bits may differ: another thread count sums in another order).
OMP_NUM_THREADS=100000 run "$data/audio/tiny_hubert" "$work/hubert-omp.f32" \
  || { echo "OMP_NUM_THREADS=100000: the pipeline failed (exit $?)"; exit 1; }
[ "$(wc -c < "$work/hubert-omp.f32")" -eq "$(wc -c < "$work/hubert.f32")" ] \
  || { echo "OMP_NUM_THREADS=100000: another frame count"; exit 1; }
echo "OMP_NUM_THREADS=100000: 104 frames"
