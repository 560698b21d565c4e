#!/bin/bash
# README.md's single-stage steps, run in order as written, with the tiny
# test models standing in for models/ (face.jpg and speech.wav from the test
# data).  Fails when a step does not run or does not write what the next one
# reads.  The bench and check lines need full-size work or a GPU: not run.
# usage: test_readme_steps.sh ANITALKER_BIN SOURCE_DIR DATA_DIR
set -eu
bin=$1 src=$2 data=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p build/tools models
ln -s "$bin" build/tools/anitalker
for f in stage1.ckpt stage2_audio_only_hubert.ckpt chinese-hubert-large; do ln -s "$data/chain/$f" models/$f; done
ln -s "$data/face-sr/gfpgan_tiny.pth" models/GFPGANv1.4.pth
cp "$data/renderer/monalisa.jpg" face.jpg
cp "$data/audio/speech_2s_16k.wav" speech.wav
# The indented lines of the README that start with build/tools/anitalker,
# with their continuation lines, in order.
awk '/^    build\/tools\/anitalker/ { cmd = $0; while (cmd ~ /\\$/) { getline next_line; sub(/\\$/, "", cmd); cmd = cmd next_line }
     print cmd }' "$src/README.md" | sed 's/  *#.*$//' > steps.txt
n=0
while IFS= read -r line; do
  case "$line" in *" bench "*|*" check "*) echo "not run (full size / GPU): $line"; continue ;; esac
  echo "+ $line"
  eval "$line" >out.txt 2>&1 || { cat out.txt; echo "FAIL: README step failed: $line"; exit 1; }
  n=$((n + 1))
done < steps.txt
[ "$n" -ge 6 ] || { echo "FAIL: only $n README steps found"; exit 1; }
for f in h.npy codes/h_source.npy codes/h_motion.npy motion.npy frames.npy; do
  [ -s "$f" ] || { echo "FAIL: $f was not written"; exit 1; }
done
echo "all $n README steps ran"
