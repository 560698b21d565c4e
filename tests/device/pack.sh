#!/bin/bash
# Packs what tests/device/run.sh needs beside the PyTorch of a bare GPU machine
# into .devdeps/ (git-ignored): OpenCV's core, imgproc and calib3d (headers
# and the shared libraries with their dependencies, from this Debian system)
# and nlohmann/json.  The GPU machine has CUDA, a compiler and PyTorch (whose
# LibTorch headers and libraries the build uses) but no OpenCV for C++.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.devdeps
rm -rf "$out" && mkdir -p "$out/stage/lib" "$out/stage/include"
cp -r /usr/include/opencv4 "$out/stage/include/"
cp -r /usr/include/nlohmann "$out/stage/include/"
mods="core imgproc calib3d features2d flann"
libs=""
for m in $mods; do libs="$libs /usr/lib/x86_64-linux-gnu/libopencv_$m.so.406"; done
# The closure, less the C and C++ runtimes every Linux has.
deps=$(ldd $libs | awk '$3 ~ /^\// {print $3}' | sort -u |
       grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|libz)\.so' || true)
for f in $libs $deps; do cp -L "$f" "$out/stage/lib/"; done
for m in $mods; do ln -sf "libopencv_$m.so.406" "$out/stage/lib/libopencv_$m.so"; done
tar -C "$out/stage" -cJf "$out/deps.tar.xz" include lib
rm -rf "$out/stage"
ls -la "$out"
