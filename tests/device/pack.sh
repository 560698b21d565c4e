#!/bin/bash
# Packs what tests/device/run.sh needs beside the PyTorch of a bare GPU machine
# into .devdeps/ (git-ignored): OpenCV's core, imgproc and calib3d (headers
# and the shared libraries with their dependencies, from this Debian system)
# and nlohmann/json; and for its `live` step GStreamer and GLib (headers,
# libraries, and the plugins the live benchmarks' pipelines use:
# coreelements, app, audiotestsrc, audioconvert, audioresample).  The GPU
# machine has CUDA, a compiler and PyTorch (whose LibTorch headers and
# libraries the build uses) but neither OpenCV for C++ nor GStreamer.
# OpenCV's imgcodecs is left out (Debian's pulls in GDAL and some 140
# libraries): the device build reads portraits as binary PPM
# (ANITALKER_NO_IMGCODECS, lib/image.cpp).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.devdeps
rm -rf "$out" && mkdir -p "$out/stage/lib" "$out/stage/include"
cp -r /usr/include/opencv4 "$out/stage/include/"
cp -r /usr/include/nlohmann "$out/stage/include/"
L=/usr/lib/x86_64-linux-gnu
cp -r /usr/include/gstreamer-1.0 /usr/include/glib-2.0 "$out/stage/include/"
cp "$L/glib-2.0/include/glibconfig.h" "$out/stage/include/glib-2.0/"
mods="core imgproc calib3d features2d flann"
libs=""
for m in $mods; do libs="$libs $L/libopencv_$m.so.406"; done
gst_libs="gstreamer gstbase gstaudio gstvideo gstapp"
for m in $gst_libs; do libs="$libs $L/lib$m-1.0.so.0"; done
for m in glib gobject gmodule gio; do libs="$libs $L/lib$m-2.0.so.0"; done
plugins=""
for m in coreelements app audiotestsrc audioconvert audioresample; do plugins="$plugins $L/gstreamer-1.0/libgst$m.so"; done
# The closure, less the C and C++ runtimes every Linux has.
deps=$(ldd $libs $plugins | awk '$3 ~ /^\// {print $3}' | sort -u |
       grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|libz)\.so' || true)
for f in $libs $deps; do cp -L "$f" "$out/stage/lib/"; done
for m in $mods; do ln -sf "libopencv_$m.so.406" "$out/stage/lib/libopencv_$m.so"; done
for m in $gst_libs; do ln -sf "lib$m-1.0.so.0" "$out/stage/lib/lib$m-1.0.so"; done
for m in glib gobject gmodule gio; do ln -sf "lib$m-2.0.so.0" "$out/stage/lib/lib$m-2.0.so"; done
mkdir -p "$out/stage/lib/gstreamer-1.0"
cp $plugins "$out/stage/lib/gstreamer-1.0/"
tar -C "$out/stage" -cJf "$out/deps.tar.xz" include lib
rm -rf "$out/stage"
ls -la "$out"
