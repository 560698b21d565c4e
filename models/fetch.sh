#!/bin/sh
# Downloads the released model files into this folder, under the names the
# elements and `anitalker generate` look for (models/manifest.tsv lists them
# with their sources).  Needs curl and network access; files already here
# are kept.  usage: models/fetch.sh [--face-sr] [--all-variants]
#   default: stage1, the default variant (hubert_audio_only) and HuBERT
#   --all-variants: the other four stage-2 checkpoints too
#   --face-sr: GFPGAN v1.4, RetinaFace and ParseNet for face restoration
set -eu
cd "$(dirname "$0")"
hf=https://huggingface.co/taocode/anitalker_ckpts/resolve/main
hubert=https://huggingface.co/TencentGameMate/chinese-hubert-large/resolve/main
face_sr=0 all=0
for a in "$@"; do
  case "$a" in
    --face-sr) face_sr=1 ;;
    --all-variants) all=1 ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
  esac
done

get() {  # URL FILE
  if [ -s "$2" ]; then echo "have $2"; return; fi
  mkdir -p "$(dirname "$2")"
  echo "fetching $2"
  curl -fL --retry 3 -o "$2.part" "$1" && mv "$2.part" "$2"
}

get "$hf/stage1.ckpt" stage1.ckpt
get "$hf/stage2_audio_only_hubert.ckpt" stage2_audio_only_hubert.ckpt
if [ $all -eq 1 ]; then
  for v in pose_only_hubert full_control_hubert pose_only_mfcc full_control_mfcc; do
    get "$hf/stage2_$v.ckpt" "stage2_$v.ckpt"
  done
fi
for f in config.json preprocessor_config.json pytorch_model.bin; do
  get "$hubert/$f" "chinese-hubert-large/$f"
done
if [ $face_sr -eq 1 ]; then
  get https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth GFPGANv1.4.pth
  get https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth \
    detection_Resnet50_Final.pth
  get https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth parsing_parsenet.pth
fi
echo "done: see models/README.md for which variant needs which file"
