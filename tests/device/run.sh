#!/bin/bash
# The GPU check, for a bare machine with an NVIDIA GPU, CUDA and PyTorch but
# no GStreamer and no OpenCV for C++ (carry .devdeps/ from tests/device/pack.sh).
# Builds lib/ and the torch-only part of the `anitalker` tool (the lists in
# lib/sources.txt and tools/sources.txt; ANITALKER_CLI_NO_MEDIA: check,
# inspect, motion and the benches) against the
# LibTorch inside that PyTorch, then runs
#   1. anitalker check --device cuda    every network, GPU against CPU
#   2. the benchmarks on cuda           render (with 25 fps pacing; graphs: the same through CUDA
#                                       graphs and channels-last), motion, sr, features
#   3. stage 2 on 2 CPU cores alone, then beside the paced GPU renderer on the
#      same 2 cores: the renderer's share of the CPU when it runs on the GPU.
#   4. (steps latency, streams) the plugin and the live benchmarks against
#      GStreamer from .devdeps: `bench latency` and `bench streams` on the
#      full-size random models (LIVE_SECONDS of live audio each, default 60;
#      LIVE_MODELS=DIR for other models; LIVE_PRESETS, STREAMS and
#      SR_STREAMS narrow what runs: each preset and each count takes
#      LIVE_SECONDS of device time, so all of them take about 12 minutes;
#      SR_ARGS adds options to the face-SR streams, e.g. "--sr-precision fp16
#      --detect-every 5 --parse-every 5", STREAMS_ARGS to the others, e.g.
#      "--precision fp16": the renderer in float16; ANITALKER_CUDA_GRAPHS=1
#      and ANITALKER_CHANNELS_LAST=1 in the environment: the renderers
#      through CUDA graphs, channels-last).
# Usage: tests/device/run.sh [OUTDIR]   (logs go to OUTDIR, default ./device-out)
# Steps to run can be narrowed with STEPS="check render graphs motion sr features cpu2"
# (the default; "latency streams" are the live ones; "debug" adds a cuda-gdb
# backtrace of the HuBERT check).
# A dry run on a machine without a GPU: DEVICE=cpu, with TORCH_INCLUDE (dirs)
# and TORCH_LIB pointing at a CPU LibTorch (Debian's: TORCH_INCLUDE=
# /usr/include/torch/csrc/api/include TORCH_LIB=/usr/lib/x86_64-linux-gnu,
# with the python3 that has torch first on PATH).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-device-out}
mkdir -p "$out"
steps=${STEPS:-check render graphs motion sr features cpu2}
log="$out/run.log"
exec > >(tee -a "$log") 2>&1
say() { echo "=== $(date -u +%H:%M:%S) $*"; }

py=$(command -v python3)
device=${DEVICE:-cuda}
torch_dir=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))') || { echo "no PyTorch"; exit 1; }
abi=$("$py" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
torch_inc=${TORCH_INCLUDE:-$torch_dir/include $torch_dir/include/torch/csrc/api/include}
tl=${TORCH_LIB:-$torch_dir/lib}
cxx=$(command -v g++ || command -v c++ || command -v clang++) || { echo "no C++ compiler"; exit 1; }
say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' || true
"$cxx" --version | head -1; nproc; lscpu | grep -E 'Model name' || true

deps=/tmp/anitalker-devdeps
rm -rf "$deps" && mkdir -p "$deps" && tar -C "$deps" -xJf .devdeps/deps.tar.xz || { echo "missing .devdeps/deps.tar.xz (tests/device/pack.sh)"; exit 1; }

say "build ($cxx, LibTorch $tl, CXX11 ABI $abi)"
obj=/tmp/anitalker-obj && mkdir -p "$obj"
std=c++17
"$py" - <<'PY' && std=c++20
import torch, sys
v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2])
sys.exit(0 if v >= (2, 13) else 1)
PY
version=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" meson.build | head -1)
flags="-std=$std -O2 -g -fPIC -w -D_GLIBCXX_USE_CXX11_ABI=$abi -DANITALKER_CLI_NO_MEDIA -DANITALKER_NO_PROFILER
  -DANITALKER_NO_IMGCODECS -Ilib -Itools
  -DANITALKER_VERSION=\"$version\"
  $(printf -- '-isystem %s ' $torch_inc) -isystem $deps/include/opencv4 -isystem $deps/include"
# The lists meson builds from (lib/sources.txt, tools/sources.txt): all of
# lib/, and the tool's LibTorch part (core), as -Dgstreamer=disabled does.
# CUDA graphs (lib/cuda_graph.cpp): LibTorch's graph header needs CUDA's
# own runtime headers; from the toolkit (nvcc's) or PyTorch's nvidia wheels.
cuda_inc=""
for d in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc || echo /none/bin/nvcc)")")"; do
  [ -n "$d" ] && [ -e "$d/include/cuda_runtime_api.h" ] && { cuda_inc="$d/include"; break; }
done
[ -n "$cuda_inc" ] || cuda_inc=$("$py" - <<'PY' 2>/dev/null
import glob, os
import nvidia
for p in nvidia.__path__:
    for f in glob.glob(os.path.join(p, "**", "cuda_runtime_api.h"), recursive=True):
        print(os.path.dirname(f))
        raise SystemExit
PY
)
plain_flags=$flags
if [ -e "$tl/libtorch_cuda.so" ] && [ -n "$cuda_inc" ]; then
  flags="$flags -DANITALKER_CUDA_GRAPHS=1 -isystem $cuda_inc"
  echo "CUDA graphs: with $cuda_inc"
else
  echo "CUDA graphs: none (no libtorch_cuda.so or no cuda_runtime_api.h)"
fi
lib_srcs=$(awk '$1 !~ /^#/ && NF == 2 { print "lib/" $2 }' lib/sources.txt)
tool_srcs=$(awk '$1 == "core" { print "tools/" $2 }' tools/sources.txt)
srcs="$lib_srcs $tool_srcs"
t0=$(date +%s)
export cxx flags obj
rm -f "$obj/lib_cuda_graph.cpp.o"
printf '%s\n' $srcs | xargs -P "$(nproc)" -I{} sh -c \
  'o=$obj/$(echo {} | tr / _).o; $cxx $flags -c {} -o $o 2> $o.err || { echo "FAILED {}"; head -c 4000 $o.err; }'
# Graphs that do not build leave the rest as it was: lib/cuda_graph.cpp
# again without them (the renderer then says "this build has none").
if [ ! -s "$obj/lib_cuda_graph.cpp.o" ]; then
  say "CUDA graphs did not build (above): lib/cuda_graph.cpp without them"
  flags=$plain_flags
  $cxx $flags -c lib/cuda_graph.cpp -o "$obj/lib_cuda_graph.cpp.o"
fi
cat "$obj"/*.err > "$out/compile.log" 2>/dev/null
cuda_libs="-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed"
[ -e "$tl/libtorch_cuda.so" ] || cuda_libs=""
# lib/ as an archive: the tool pulls in what it uses (no image files, so no
# imgcodecs), as the meson build's shared library would provide.
rm -f "$obj/libanitalker.a"
ar rcs "$obj/libanitalker.a" $(for f in $lib_srcs; do echo "$obj/$(echo "$f" | tr / _).o"; done)
"$cxx" $(for f in $tool_srcs; do echo "$obj/$(echo "$f" | tr / _).o"; done) "$obj/libanitalker.a" -o /tmp/anitalker \
  -L"$tl" -Wl,-rpath,"$tl" $cuda_libs \
  -ltorch -ltorch_cpu -lc10 -L"$deps/lib" -Wl,-rpath,"$deps/lib" -lopencv_calib3d -lopencv_imgproc -lopencv_core \
  -lpthread -ldl -Wl,--allow-shlib-undefined || { say "link failed"; exit 1; }
say "built in $(( $(date +%s) - t0 )) s"
at=/tmp/anitalker
export LD_LIBRARY_PATH="$deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The live steps: the plugin (gst/, its list in gst/meson.build) and the tool
# with its live benchmarks (tools/sources.txt `live`, ANITALKER_CLI_LIVE),
# against .devdeps' GStreamer; the plugin found through GST_PLUGIN_PATH, the
# packed plugins through GST_PLUGIN_SYSTEM_PATH, the registry scanned in this
# process (no gst-plugin-scanner).
live_built=""
build_live() {
  [ -n "$live_built" ] && return 0
  say "build the plugin and the live benchmarks"
  [ -d "$deps/include/gstreamer-1.0" ] || { echo "no GStreamer in .devdeps (rerun tests/device/pack.sh)"; return 1; }
  local t1=$(date +%s) gst_srcs live_srcs lobj="$obj/live" f
  mkdir -p "$lobj" "$lobj/gst"
  gst_srcs=$(grep -o "'[a-z0-9_]*\.cpp'" gst/meson.build | tr -d "'" | sed 's|^|gst/|')
  live_srcs="$(awk '$1 == "live" { print "tools/" $2 }' tools/sources.txt) tools/anitalker.cpp"
  export lflags="$flags -DANITALKER_CLI_LIVE -DPACKAGE=\"anitalker-gst\" -DANITALKER_ORIGIN=\"anitalker-gst\"
    -isystem $deps/include/gstreamer-1.0 -isystem $deps/include/glib-2.0" lobj
  printf '%s\n' $gst_srcs $live_srcs | xargs -P "$(nproc)" -I{} sh -c \
    'o=$lobj/$(echo {} | tr / _).o; $cxx $lflags -c {} -o $o 2> $o.err || { echo "FAILED {}"; head -c 4000 $o.err; }'
  cat "$lobj"/*.err >> "$out/compile.log" 2>/dev/null
  local gst_libs="-L$deps/lib -lgstapp-1.0 -lgstvideo-1.0 -lgstaudio-1.0 -lgstbase-1.0 -lgstreamer-1.0 -lgio-2.0 -lgobject-2.0 -lglib-2.0"
  local torch_libs="-L$tl -Wl,-rpath,$tl $cuda_libs -ltorch -ltorch_cpu -lc10"
  local cv_libs="-Wl,-rpath,$deps/lib -lopencv_calib3d -lopencv_imgproc -lopencv_core"
  "$cxx" -shared -o "$lobj/gst/libgstanitalker.so" $(for f in $gst_srcs; do echo "$lobj/$(echo "$f" | tr / _).o"; done) \
    "$obj/libanitalker.a" $torch_libs $gst_libs $cv_libs -lpthread -ldl -Wl,--allow-shlib-undefined ||
    { say "plugin link failed"; return 1; }
  "$cxx" $(for f in $tool_srcs; do [ "$f" = tools/anitalker.cpp ] || echo "$obj/$(echo "$f" | tr / _).o"; done) \
    $(for f in $live_srcs; do echo "$lobj/$(echo "$f" | tr / _).o"; done) "$obj/libanitalker.a" -o /tmp/anitalker-live \
    $torch_libs $gst_libs $cv_libs -lpthread -ldl -Wl,--allow-shlib-undefined || { say "live tool link failed"; return 1; }
  export GST_PLUGIN_SYSTEM_PATH_1_0="$deps/lib/gstreamer-1.0" GST_PLUGIN_PATH_1_0="$lobj/gst"
  export GST_REGISTRY_1_0="$lobj/registry.bin" GST_REGISTRY_FORK=no
  # The full-size models with random weights, and the fixture's portrait
  # as binary PPM (this build reads no other image format).
  full=${LIVE_MODELS:-/tmp/anitalker-full}  # LIVE_MODELS=tests/data/chain: the tiny chain (dry runs)
  [ -e "$full/stage1.ckpt" ] || run fixtures 300 $at fixtures random "$full" --hubert --face-sr
  "$py" - <<'PY' || return 1
# Without numpy (PyTorch's wheels do not need it): the .npy header, then
# float32 (1, 3, 256, 256) in [-1, 1], little-endian, C order.
import array, ast
with open("tests/data/renderer/input.npy", "rb") as f:
    assert f.read(6) == b"\x93NUMPY"
    major = f.read(2)[0]
    n = int.from_bytes(f.read(2 if major == 1 else 4), "little")
    head = ast.literal_eval(f.read(n).decode("latin1"))
    assert head["descr"] == "<f4" and not head["fortran_order"], head
    x = array.array("f")
    x.frombytes(f.read())
_, c, h, w = head["shape"]
rgb = bytearray(h * w * 3)
for k in range(c):
    for i in range(h * w):
        v = round((x[k * h * w + i] + 1) * 127.5)
        rgb[3 * i + k] = min(255, max(0, v))
with open("/tmp/anitalker-portrait.ppm", "wb") as f:
    f.write(b"P6\n%d %d\n255\n" % (w, h) + bytes(rgb))
PY
  say "live build in $(( $(date +%s) - t1 )) s"
  live_built=1
}
live_s=${LIVE_SECONDS:-60}

run() {  # name timeout command...
  local name=$1 t=$2; shift 2
  say "$name: $*"
  timeout "$t" stdbuf -oL -eL "$@"; local rc=$?
  say "$name: exit $rc"
}
for s in $steps; do
  case $s in
    check)  # one network per process: a crash in one does not hide the others
      for n in motion render sr hubert; do run check-$n 150 $at check --device $device --only $n; done ;;
    debug)  # a backtrace of the hubert check, with cuda-gdb (the machine has no gdb)
      run hubert-cpu 60 $at bench features --device cpu --seconds 1 --repeat 1 --layers 2
      command -v cuda-gdb && timeout 120 cuda-gdb -q -batch -ex run -ex bt -ex "info sharedlibrary" --args $at check --device $device --only hubert 2>&1 | grep -v "^\[New Thread\|^\[Thread" | head -120 ;;
    render) run render 180 $at bench render --device $device --threads 1 --batch 1,4,16,64,256 --frames 256 --repeat 5 --fp16 --pace 25 --seconds 10 ;;
    graphs)  # the decoder as CUDA graphs and channels-last (issue 20), a process of its own: a recording that breaks the GPU's context ends only this step
      run graphs 240 $at bench render --device $device --threads 1 --batch 1,4,16,64 --frames 256 --repeat 5 --fp16 --graphs --channels-last --pace 25 --seconds 10 ;;
    motion) run motion 180 $at bench motion --device $device --variants ha,hf --steps 50,25,10 --stream 25:25:0,25:8:0,50:10:0 --repeat 3 ;;
    sr) run sr 180 $at bench sr --device $device --repeat 5 --fp16 --batch 1,8,32
      # batches as grouped convolutions over per-face weights, as before 2026-12-06: the comparison
      run sr-grouped 150 env ANITALKER_GFPGAN_GROUPED=1 $at bench sr --device $device --repeat 3 --fp16 --batch 8,32
      # GFPGAN channels-last (its option; ParseNet and RetinaFace as before)
      run sr-nhwc 150 env ANITALKER_CHANNELS_LAST=1 $at bench sr --device $device --repeat 3 --fp16 --batch 1,8,32 ;;
    features) run features 120 $at bench features --device $device --repeat 5 ;;
    cpu2)
      run motion-2cores-alone 150 taskset -c 0,1 $at bench motion --device cpu --threads 2 --variants ha --steps 50 --stream 50:10:0 --repeat 3
      taskset -c 0,1 $at bench render --device $device --threads 1 --batch 1 --frames 4 --repeat 1 --pace 25 --seconds 75 > "$out/render-beside.log" 2>&1 &
      rp=$!
      sleep 8
      run motion-2cores-beside-render 150 taskset -c 0,1 $at bench motion --device cpu --threads 2 --variants ha --steps 50 --stream 50:10:0 --repeat 3
      kill $rp 2>/dev/null; wait $rp 2>/dev/null
      grep -E "paced|encode" "$out/render-beside.log" || tail -5 "$out/render-beside.log" ;;
    latency)  # issue 17's figures: first frame, steady-state delay, late frames per preset
      build_live || continue
      run latency $(( 3 * live_s + 120 )) /tmp/anitalker-live bench latency --device $device --models-dir "$full" \
        --portrait /tmp/anitalker-portrait.ppm --preset "${LIVE_PRESETS:-low,balanced,quality}" --seconds $live_s ;;
    streams)  # issue 20's streams per GPU: N live pipelines sharing one executor per network
      build_live || continue
      run streams $(( 5 * live_s + 180 )) /tmp/anitalker-live bench streams --device $device --models-dir "$full" \
        --portrait /tmp/anitalker-portrait.ppm --streams "${STREAMS:-1,4,16,32,64}" --seconds $live_s --max-batch 64 \
        ${STREAMS_ARGS:-}
      run streams-face-sr $(( 4 * live_s + 180 )) /tmp/anitalker-live bench streams --device $device --models-dir "$full" \
        --portrait /tmp/anitalker-portrait.ppm --streams "${SR_STREAMS:-1,4,8,16}" --seconds $live_s --max-batch 16 --face-sr ${SR_ARGS:-} ;;
  esac
done
say "done"
