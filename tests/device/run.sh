#!/bin/bash
# The GPU check, for a bare machine with an NVIDIA GPU, CUDA and PyTorch but
# no GStreamer and no OpenCV for C++ (carry .devdeps/ from tests/device/pack.sh).
# Builds lib/ and the torch-only part of the `anitalker` tool (the lists in
# lib/sources.txt and tools/sources.txt; ANITALKER_CLI_NO_MEDIA: check,
# inspect, motion and the benches) against the
# LibTorch inside that PyTorch, then runs
#   1. anitalker check --device cuda    every network, GPU against CPU
#   2. the benchmarks on cuda           render (with 25 fps pacing), motion, sr, features
#   3. stage 2 on 2 CPU cores alone, then beside the paced GPU renderer on the
#      same 2 cores: the renderer's share of the CPU when it runs on the GPU.
# Usage: tests/device/run.sh [OUTDIR]   (logs go to OUTDIR, default ./device-out)
# Steps to run can be narrowed with STEPS="check render motion sr features cpu2"
# ("debug" adds a cuda-gdb backtrace of the HuBERT check).
# A dry run on a machine without a GPU: DEVICE=cpu, with TORCH_INCLUDE (dirs)
# and TORCH_LIB pointing at a CPU LibTorch (Debian's: TORCH_INCLUDE=
# /usr/include/torch/csrc/api/include TORCH_LIB=/usr/lib/x86_64-linux-gnu,
# with the python3 that has torch first on PATH).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-device-out}
mkdir -p "$out"
steps=${STEPS:-check render motion sr features cpu2}
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
flags="-std=$std -O2 -g -fPIC -w -D_GLIBCXX_USE_CXX11_ABI=$abi -DANITALKER_CLI_NO_MEDIA -DANITALKER_NO_PROFILER -Ilib -Itools
  -DANITALKER_VERSION=\"$version\"
  $(printf -- '-isystem %s ' $torch_inc) -isystem $deps/include/opencv4 -isystem $deps/include"
# The lists meson builds from (lib/sources.txt, tools/sources.txt): all of
# lib/, and the tool's LibTorch part (core), as -Dgstreamer=disabled does.
lib_srcs=$(awk '$1 !~ /^#/ && NF == 2 { print "lib/" $2 }' lib/sources.txt)
tool_srcs=$(awk '$1 == "core" { print "tools/" $2 }' tools/sources.txt)
srcs="$lib_srcs $tool_srcs"
t0=$(date +%s)
export cxx flags obj
printf '%s\n' $srcs | xargs -P "$(nproc)" -I{} sh -c \
  'o=$obj/$(echo {} | tr / _).o; $cxx $flags -c {} -o $o 2> $o.err || { echo "FAILED {}"; head -c 4000 $o.err; }'
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
    render) run render 120 $at bench render --device $device --threads 1 --batch 1,4,16,64 --frames 64 --repeat 5 --pace 25 --seconds 10 ;;
    motion) run motion 180 $at bench motion --device $device --variants ha,hf --steps 50,25,10 --stream 25:25:0,25:8:0,50:10:0 --repeat 3 ;;
    sr) run sr 120 $at bench sr --device $device --repeat 5 ;;
    features) run features 120 $at bench features --device $device --repeat 5 ;;
    cpu2)
      run motion-2cores-alone 150 taskset -c 0,1 $at bench motion --device cpu --threads 2 --variants ha --steps 50 --stream 50:10:0 --repeat 3
      taskset -c 0,1 $at bench render --device $device --threads 1 --batch 1 --frames 4 --repeat 1 --pace 25 --seconds 75 > "$out/render-beside.log" 2>&1 &
      rp=$!
      sleep 8
      run motion-2cores-beside-render 150 taskset -c 0,1 $at bench motion --device cpu --threads 2 --variants ha --steps 50 --stream 50:10:0 --repeat 3
      kill $rp 2>/dev/null; wait $rp 2>/dev/null
      grep -E "paced|encode" "$out/render-beside.log" || tail -5 "$out/render-beside.log" ;;
  esac
done
say "done"
