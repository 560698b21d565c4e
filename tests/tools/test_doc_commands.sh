#!/bin/bash
# The commands of README.md (its `build/tools/anitalker`, `export` and
# `gst-inspect-1.0` lines, in order) and the gst-launch-1.0 pipelines of
# docs/elements.md, run as written with the tiny test models standing in for
# models/ (face.jpg and speech.wav from the test data).  Fails when a command
# does not run or does not write what the next one reads.  The bench and
# check lines need full-size work or a GPU: not run.  Then every other
# command in README.md, docs/*.md and models/README.md must be listed, with
# why it is not run here, in doc_commands_not_run.txt: a new command in the
# docs fails this test until it is run or listed.
# The face detector is the narrow RetinaFace that finds a 16-px face per
# 32x32 cell (tests/narrow_retinaface.h), so `--crop auto` has faces to crop.
# usage: test_doc_commands.sh ANITALKER_BIN SOURCE_DIR DATA_DIR WRITE_NARROW_RETINAFACE
set -eu
bin=$1 src=$2 data=$3 narrow=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p build/tools models
ln -s "$bin" build/tools/anitalker
ln -s "$(cd "$(dirname "$bin")/../gst" && pwd)" build/gst
for f in stage1.ckpt stage2_audio_only_hubert.ckpt chinese-hubert-large; do ln -s "$data/chain/$f" models/$f; done
ln -s "$data/face-sr/gfpgan_tiny.pth" models/GFPGANv1.4.pth
ln -s "$data/face-sr/parsenet_tiny.pth" models/parsing_parsenet.pth
"$narrow" "$data/face-sr/retinaface_resnet50_keys.txt" models/detection_Resnet50_Final.pth two
cp "$data/renderer/monalisa.jpg" face.jpg
cp "$data/audio/speech_2s_16k.wav" speech.wav
# The indented lines of the README that start with build/tools/anitalker,
# with their continuation lines, in order.
awk '/^    (build\/tools\/anitalker|export GST_PLUGIN_PATH_1_0=|gst-inspect-1.0 )/ { cmd = $0; while (cmd ~ /\\$/) { getline next_line; sub(/\\$/, "", cmd); cmd = cmd next_line }
     print cmd }' "$src/README.md" | sed 's/  *#.*$//' > steps.txt
n=0
while IFS= read -r line; do
  case "$line" in *" bench "*|*" check "*) echo "not run (full size / GPU): $line"; continue ;; esac
  echo "+ $line"
  eval "$line" >out.txt 2>&1 || { cat out.txt; echo "FAIL: README step failed: $line"; exit 1; }
  n=$((n + 1))
done < steps.txt
[ "$n" -ge 6 ] || { echo "FAIL: only $n README steps found"; exit 1; }
for f in out-sr.mp4 h.npy codes/h_source.npy codes/h_motion.npy motion.npy frames.npy crop.png box.json talking-photo.mp4; do
  [ -s "$f" ] || { echo "FAIL: $f was not written"; exit 1; }
done
echo "all $n README steps ran"

# docs/elements.md's gst-launch-1.0 pipelines, each on its own.
awk '/^    gst-launch-1.0/ { cmd = $0; while (cmd ~ /\\$/) { getline next_line; sub(/\\$/, "", cmd); cmd = cmd next_line }
     print cmd }' "$src/docs/elements.md" > pipelines.txt
p=0
while IFS= read -r line; do
  echo "+ $line"
  eval "timeout 120 $line" >out.txt 2>&1 || { tail -20 out.txt; echo "FAIL: docs/elements.md pipeline failed: $line"; exit 1; }
  grep -q "^ERROR" out.txt && { tail -20 out.txt; echo "FAIL: $line"; exit 1; }
  p=$((p + 1))
done < pipelines.txt
[ "$p" -ge 5 ] || { echo "FAIL: only $p pipelines found in docs/elements.md"; exit 1; }
for f in out.mp4 features.f32 motion-demo.mp4 out-sr.mp4 photo-out.mp4 photo-bin.mp4; do
  [ -s "$f" ] || { echo "FAIL: $f was not written"; exit 1; }
done
echo "all $p docs/elements.md pipelines ran"

# Every other command of the docs: run above, or listed with why not.
listed="$src/tests/tools/doc_commands_not_run.txt"
cat steps.txt pipelines.txt > ran.txt
missing=0
for f in $(cd "$src" && ls README.md docs/*.md models/README.md); do
  awk -v f="$f" '/^    (build\/tools\/anitalker|anitalker|gst-launch-1\.0|gst-inspect-1\.0|tools\/[a-z_-]+\.sh|pipelines\/[a-z_-]+\.sh|models\/fetch\.sh|build\/tests\/[^ ]+|bash|sudo|meson|ninja|nginx|export|mkdir|cat)( |$)/ {
       line = $0; sub(/^    /, "", line); sub(/ +#.*$/, "", line); sub(/ *\\$/, "", line); print f "\t" line }' "$src/$f"
done > doc-commands.txt
while IFS=$'\t' read -r f line; do
  grep -qF -- "$line" ran.txt && continue
  awk -F'\t' -v f="$f" -v l="$line" '$1 == f && $2 == l { found = 1 } END { exit !found }' "$listed" && continue
  echo "not run and not listed in tests/tools/doc_commands_not_run.txt: $f: $line"
  missing=$((missing + 1))
done < doc-commands.txt
[ "$missing" -eq 0 ] || { echo "FAIL: $missing command(s) of the docs neither run nor listed"; exit 1; }
echo "every command of README.md and docs/ ran here or is listed with why not ($(wc -l < doc-commands.txt) in all)"
