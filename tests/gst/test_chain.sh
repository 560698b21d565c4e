#!/bin/sh
# End to end with the tiny models that chain (tests/data/chain): the
# `anitalker` bin in a gst-launch pipeline, and `anitalker generate`, each
# writing an MP4 of the 2 s clip.  Checks with ffprobe: the video has
# floor((T_hubert + 1) / 2) = 52 frames at 25 fps (T_hubert = 103 for the
# clip's 33337 samples; 51 = floor(207 / 4) with MFCC), frame n at n x 40 ms; the AAC track lasts the clip;
# both decode cleanly.  Then the errors: missing models are listed with their
# sources, and a failed run leaves no file behind.
# usage: test_chain.sh ANITALKER_BIN DATA_DIR
set -eu
bin=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models=$data/chain
face=$data/renderer/monalisa.jpg
clip=$data/audio/speech_2s_16k.wav

. "$(dirname "$0")/check_mp4.sh"  # check_mp4 FILE VIDEO_FRAMES

# 1. The bin in gst-launch: audio teed into the bin and into the AAC encoder.
gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! tee name=t \
  t. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 \
     ! anitalker models-dir="$models" portrait="$face" steps=10 \
     ! videoconvert ! video/x-raw,format=I420 ! x264enc ! h264parse ! queue ! mux.video_0 \
  t. ! queue ! audioconvert ! audioresample ! avenc_aac ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 \
     ! mux.audio_0 \
  mp4mux name=mux ! filesink location="$work/launch.mp4"
check_mp4 "$work/launch.mp4" 52

# 2. anitalker generate, named as the demo names its output in a folder.
mkdir "$work/out"
"$bin" generate --portrait "$face" --audio "$clip" --models-dir "$models" --steps 10 --quiet --out "$work/out"
check_mp4 "$work/out/monalisa-speech_2s_16k.mp4" 52
"$bin" generate --portrait "$face" --audio "$clip" --models-dir "$models" --variant mfcc_full_control --control \
  --pose 0.1 0 0 --steps 10 --quiet --out "$work/mfcc.mp4"
check_mp4 "$work/mfcc.mp4" 51  # MFCC: floor(207 / 4) frames, as the demo trims

# 3. Missing models: each file and its source, exit 1, no output.
if "$bin" generate --portrait "$face" --audio "$clip" --models-dir "$work/none" --out "$work/x.mp4" 2>"$work/err"; then
  echo "generate without models succeeded"; exit 1
fi
cat "$work/err"
grep -q "stage1.ckpt" "$work/err" && grep -q "taocode/anitalker_ckpts" "$work/err" &&
  grep -q "chinese-hubert-large/pytorch_model.bin" "$work/err" || { echo "missing files not listed"; exit 1; }
grep -q "the models folder $work/none does not exist" "$work/err" || { echo "the missing folder is not said"; exit 1; }
# The bin says the same; a file as the folder is named as such.
if gst-launch-1.0 audiotestsrc num-buffers=3 ! anitalker models-dir="$clip" portrait="$face" ! fakesink \
     > "$work/err" 2>&1; then
  echo "the bin started with a file as models-dir"; exit 1
fi
grep -q "the models folder $clip is not a folder" "$work/err" || { cat "$work/err"; echo "not said: not a folder"; exit 1; }

# 4. A portrait that is not an image: an error, and neither the MP4 nor a part of it.
echo "not an image" > "$work/bad.jpg"
if "$bin" generate --portrait "$work/bad.jpg" --audio "$clip" --models-dir "$models" --steps 10 --quiet \
     --out "$work/bad.mp4" 2>"$work/err"; then
  echo "generate with a bad portrait succeeded"; exit 1
fi
cat "$work/err"
ls "$work"/bad.mp4* 2>/dev/null && { echo "a half-written file was left"; exit 1; }
# In a pipeline, the motion element's error that follows the renderer's says
# the renderer could not use its portrait (it said to put an anitalkerrender
# downstream, which is there, found 2026-12-07).
gst-launch-1.0 filesrc location="$clip" ! wavparse ! anitalker models-dir="$models" portrait="$work/bad.jpg" steps=10 \
  ! fakesink > "$work/bad.log" 2>&1 && { echo "a bad portrait played"; exit 1; }
grep -q "Could not use the portrait" "$work/bad.log" || { cat "$work/bad.log"; echo "the renderer's error is missing"; exit 1; }
if grep -q "needs an anitalkerrender" "$work/bad.log"; then cat "$work/bad.log"; echo "the motion element blames the pipeline"; exit 1; fi

# 5. Caps after the bin that its video cannot meet (another rate or size, no
# videorate / videoscale between): an error naming both sides.  Until
# 2026-12-06 the offline frames, pushed at EOS, were refused without a word
# and the pipeline ended with EOS and no video (exit 0).
for caps in "video/x-raw,framerate=30/1" "video/x-raw,width=128,height=128"; do
  if gst-launch-1.0 filesrc location="$clip" ! wavparse ! anitalker models-dir="$models" portrait="$face" steps=10 \
       ! "$caps" ! fakesink > "$work/err" 2>&1; then
    cat "$work/err"; echo "the bin before $caps ended without an error"; exit 1
  fi
  grep -q "Downstream takes none of the video the renderer makes.*downstream takes video/x-raw" "$work/err" ||
    { cat "$work/err"; echo "the error for $caps does not name both sides"; exit 1; }
done
# With videorate between, the same rate is met: 2.08 s at 30 fps.
n=$(gst-launch-1.0 -v filesrc location="$clip" ! wavparse ! anitalker models-dir="$models" portrait="$face" steps=10 \
      ! videorate ! video/x-raw,framerate=30/1 ! fakesink silent=false 2>&1 | grep -c "fakesink0: last-message = chain")
[ "$n" -ge 60 ] || { echo "videorate to 30 fps gave $n frames"; exit 1; }
echo ok
