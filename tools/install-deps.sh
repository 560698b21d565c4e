#!/usr/bin/env bash
# Installs the Debian 12 packages anitalker-gst builds and tests with, if
# any is missing.  Runs apt-get as root, or through sudo.
set -euo pipefail

# What building and running need (tools/setup.sh installs only these).
run_packages=(
  # build
  g++ meson ninja-build pkg-config ccache
  # LibTorch (CPU) and a fast BLAS for it (without OpenBLAS, matmuls use the
  # reference BLAS and run ~15x slower)
  libtorch-dev libopenblas0-openmp
  # oneDNN's headers (LibTorch runs on the same library): the motion
  # decoder's linear layers with packed weights
  libdnnl-dev
  # images
  libopencv-dev
  # GStreamer 1.22: core, base, good, tools
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-tools
  # encoders and muxing for `anitalker generate` and the pipelines: x264enc
  # (ugly), avenc_aac (libav), h264parse, rtmp2sink, webrtcbin, srt (bad)
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-plugins-bad
  # `anitalker webrtc`: webrtcbin's headers, and libnice for its ICE
  libgstreamer-plugins-bad1.0-dev gstreamer1.0-nice
  # JSON (config.json, safetensors headers)
  nlohmann-json3-dev
)
# What the test suite adds (tools/test.sh, CI).
test_packages=(
  # GoogleTest, and clang's libFuzzer for the fuzz targets
  libgtest-dev libgmock-dev clang libclang-rt-dev
  # the end-to-end tests read the MP4s and the RTMP stream back with ffprobe,
  # from an nginx-rtmp they start on 127.0.0.1
  ffmpeg nginx libnginx-mod-rtmp
  # the WebRTC test opens the page in headless Chromium
  chromium
  # the long-audio test reads peak memory with GNU time
  time
  # the crop test builds a comma-decimal locale (de_DE) with localedef
  locales
)
# usage: install-deps.sh [--run]   (--run: only what building and running need)
packages=("${run_packages[@]}")
[ "${1:-}" = "--run" ] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
