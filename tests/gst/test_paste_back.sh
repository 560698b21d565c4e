#!/bin/sh
# Any photo in, full frame out, end to end with the tiny chain models: a
# 1280x720 photo with the face off-centre (the Mona Lisa test portrait on a
# gradient), `generate --crop auto --face-box ... --paste-back` (the box is
# the detector's answer given by hand: the released RetinaFace is not here).
#  - the MP4 is 1280x720 H.264 with 52 frames and the AAC track in sync
#    (check_mp4.sh, as for the 256x256 chain);
#  - outside the crop square (computed by hand below) every frame equals the
#    photo within the codec's error: PSNR >= 40 dB there;
#  - inside it, the frames are not the photo (the face is pasted: a bound
#    that fails if the paste is skipped);
#  - max-size scales down and keeps sizes even; a PNG sequence; a portrait
#    taken from a video at --portrait-time; the bad-input messages.
# usage: test_paste_back.sh ANITALKER_BIN DATA_DIR
set -eu
bin=$1 data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models=$data/chain
clip=$data/audio/speech_2s_16k.wav
. "$(dirname "$0")/check_mp4.sh"

# The photo: the 512x512 test portrait at 384x384, placed at (820, 200).
ffmpeg -v error -y -f lavfi -i "gradients=s=1280x720:c0=0x3050a0:c1=0xd0a070:seed=1" -i "$data/renderer/monalisa.jpg" \
  -filter_complex "[1:v]scale=384:384[m];[0:v][m]overlay=820:200,format=rgb24" -frames:v 1 "$work/photo.png"

# The face box 905,265 - 1085,520 (180 x 255): side round(255 x 1.6) = 408;
# centre (995, 392.5): x = 995 - 204 = 791, y = round(188.5) = 189.
sx=791 sy=189 side=408
"$bin" generate --portrait "$work/photo.png" --audio "$clip" --models-dir "$models" --steps 10 --quiet \
  --crop auto --face-box 905,265,1085,520 --paste-back --out "$work/full.mp4"
size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0 "$work/full.mp4")
[ "$size" = "1280,720" ] || { echo "full.mp4 is $size, expected 1280,720"; exit 1; }
check_mp4 "$work/full.mp4" 52

# PSNR over the pixels outside the square: the square is blacked out in both
# pictures, so its MSE is 0 there and MSE_outside = MSE x all / outside.
psnr_outside() {  # VIDEO -> the worst frame's PSNR outside the square, and inside's MSE on stdout
  ffmpeg -v error -i "$1" -loop 1 -i "$work/photo.png" -lavfi \
    "[0:v]format=gbrp,drawbox=x=$sx:y=$sy:w=$side:h=$side:color=black:t=fill[a];[1:v]format=gbrp,drawbox=x=$sx:y=$sy:w=$side:h=$side:color=black:t=fill[b];[a][b]psnr=stats_file=$work/out.log" \
    -frames:v 52 -f null -
  awk -v all=$((1280 * 720)) -v sq=$((side * side)) '{
      for (i = 1; i <= NF; i++) if ($i ~ /^mse_avg:/) { split($i, kv, ":"); m = kv[2] * all / (all - sq) }
      p = m > 0 ? 10 * log(255 * 255 / m) / log(10) : 99
      if (NR == 1 || p < worst) worst = p
    } END { printf "%.2f\n", worst }' "$work/out.log"
}
p=$(psnr_outside "$work/full.mp4")
echo "PSNR outside the square, worst frame: $p dB"
awk -v p="$p" 'BEGIN { exit !(p >= 40) }' || { echo "outside the square the video is not the photo (< 40 dB)"; exit 1; }

# Inside the square the frames must differ from the photo: the face was pasted.
ffmpeg -v error -i "$work/full.mp4" -loop 1 -i "$work/photo.png" -lavfi \
  "[0:v]format=gbrp,crop=$side:$side:$sx:$sy[a];[1:v]format=gbrp,crop=$side:$side:$sx:$sy[b];[a][b]psnr=stats_file=$work/in.log" \
  -frames:v 52 -f null -
inside=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^psnr_avg:/) { split($i, kv, ":"); if (kv[2] > best) best = kv[2] } } END { print best + 0 }' "$work/in.log")
echo "PSNR inside the square, best frame: $inside dB"
awk -v p="$inside" 'BEGIN { exit !(p < 30) }' || { echo "inside the square the photo is unchanged: nothing pasted"; exit 1; }

# max-size: 1280x720 capped at 640 -> 640x360; a PNG sequence from 1, no audio.
mkdir "$work/frames"
"$bin" generate --portrait "$work/photo.png" --audio "$clip" --models-dir "$models" --steps 10 --quiet \
  --crop auto --face-box 905,265,1085,520 --paste-back --max-size 640 --out "$work/frames/%04d.png"
n=$(ls "$work/frames" | wc -l)
[ "$n" = 52 ] || { echo "$n frames, expected 52"; ls -a "$work/frames"; exit 1; }
[ -f "$work/frames/0001.png" ] && [ -f "$work/frames/0052.png" ] || { echo "not numbered 1 to 52"; exit 1; }
ls -a "$work/frames" | grep -q '^\.anitalker' && { echo "the temporary folder was left"; exit 1; }
s=$(ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$work/frames/0001.png")
[ "$s" = "640,360" ] || { echo "frame is $s, expected 640,360"; exit 1; }

# With face SR the restored square (twice the renderer's size) is pasted at
# the crop's size the same way: the video is still the photo's size.
mkdir "$work/m"
for f in stage1.ckpt stage2_audio_only_hubert.ckpt chinese-hubert-large; do ln -s "$models/$f" "$work/m/$f"; done
ln -s "$data/face-sr/gfpgan_tiny.pth" "$work/m/GFPGANv1.4.pth"
ln -s "$data/face-sr/parsenet_tiny.pth" "$work/m/parsing_parsenet.pth"
ln -s "$data/face-sr/retinaface_narrow.pth" "$work/m/detection_Resnet50_Final.pth"
"$bin" generate --portrait "$work/photo.png" --audio "$clip" --models-dir "$work/m" --steps 10 --quiet --face-sr \
  --crop $sx,$sy,$side --paste-back --out "$work/sr.mp4"
size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0 "$work/sr.mp4")
[ "$size" = "1280,720" ] || { echo "sr.mp4 is $size, expected 1280,720"; exit 1; }
p=$(psnr_outside "$work/sr.mp4")
echo "with face SR: PSNR outside the square, worst frame: $p dB"
awk -v p="$p" 'BEGIN { exit !(p >= 40) }' || { echo "with face SR, outside the square is not the photo"; exit 1; }

# A portrait from a video (the MP4 above, at 1 s), output scaled and in WebM.
"$bin" generate --portrait "$work/full.mp4" --portrait-time 1 --audio "$clip" --models-dir "$models" --steps 10 \
  --quiet --size 128x96 --out "$work/v.webm"
v=$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height -of csv=p=0 "$work/v.webm")
[ "$v" = "vp9,128,96" ] || { echo "v.webm: $v, expected vp9,128,96"; exit 1; }
ffprobe -v error -select_streams a:0 -show_entries stream=codec_name -of csv=p=0 "$work/v.webm" | grep -qx opus ||
  { echo "v.webm has no Opus track"; exit 1; }
# matroskamux's random track UIDs are renumbered, so two runs agree here;
# not asserted: on a CI machine two WebM runs once differed in their VP9 data
# (cause not found), where MP4 and PNG outputs are byte-identical.
"$bin" generate --portrait "$work/full.mp4" --portrait-time 1 --audio "$clip" --models-dir "$models" --steps 10 \
  --quiet --size 128x96 --out "$work/v2.webm"
cmp -s "$work/v.webm" "$work/v2.webm" && echo "two WebM runs: the same bytes" || echo "two WebM runs: different bytes"

# Bad input: each refused with its reason, and no file left behind.
fails() {  # EXPECTED_TEXT ARGS...
  want=$1; shift
  if "$bin" generate --audio "$clip" --models-dir "$models" --steps 10 --quiet "$@" 2>"$work/err"; then
    echo "generate $* succeeded"; exit 1
  fi
  grep -qF -- "$want" "$work/err" || { echo "generate $*: expected \"$want\" in:"; cat "$work/err"; exit 1; }
}
fails "is outside the picture (1280x720)" --portrait "$work/photo.png" --crop auto --face-box 1300,10,1400,100 \
  --paste-back --out "$work/bad.mp4"
fails "is outside the picture (1280x720)" --portrait "$work/photo.png" --crop 1280,0,100 --out "$work/bad.mp4"
fails "--paste-back needs a crop" --portrait "$work/photo.png" --paste-back --out "$work/bad.mp4"
fails "detection_Resnet50_Final.pth" --portrait "$work/photo.png" --crop auto --out "$work/bad.mp4"
fails "past the end of the video" --portrait "$work/full.mp4" --portrait-time 9 --out "$work/bad.mp4"
fails "--crop: expected auto, none or X,Y,SIDE" --portrait "$work/photo.png" --crop centre --out "$work/bad.mp4"
ls "$work"/bad.mp4* "$work"/.bad.mp4* 2>/dev/null && { echo "a half-written file was left"; exit 1; }
echo ok
