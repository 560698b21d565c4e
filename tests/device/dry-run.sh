#!/bin/bash
# tests/device/run.sh on this machine, before device time is spent on it:
# its build (all of lib/ and the tool, then the plugin and the live
# benchmarks, with the device build's flags: no oneDNN headers, no OpenMP,
# no profiler, no image codecs) against the system's LibTorch, and its steps
# on the CPU.  A stand-in for the `torch` Python module (the GPU machine's
# PyTorch tells run.sh where LibTorch is) points it at the system's headers
# and libraries.  The live steps run on the tiny chain models, with the
# face-sr fixtures under the released names for gfpgansr.
#
#   bash tests/device/dry-run.sh [OUT]     (default OUT: device-dry-run)
#
# STEPS (default "latency streams"), LIVE_SECONDS (5), STREAMS (1,2) and
# SR_STREAMS (1) as for run.sh.  About 5 minutes on 2 idle cores, most of it
# the build.  The figures mean nothing (CPU, tiny models); the point is that
# every step builds, starts and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-device-dry-run}
[ -e .devdeps/deps.tar.xz ] || bash tests/device/pack.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The stand-in: what run.sh asks PyTorch (its folder, the C++ ABI, versions).
mkdir -p "$tmp/torch"
cat > "$tmp/torch/__init__.py" <<'PY'
# A stand-in for PyTorch (tests/device/dry-run.sh): the system's LibTorch.
__version__ = "1.13.0"
class _C:
    _GLIBCXX_USE_CXX11_ABI = True
class version:
    cuda = None
class backends:
    class cudnn:
        @staticmethod
        def version():
            return None
PY
lib=$(dirname "$(readlink -f "$(ldconfig -p | awk '/libtorch_cpu\.so / {print $NF; exit}')")")
api=/usr/include/torch/csrc/api/include
[ -d "$lib" ] && [ -d "$api" ] || { echo "dry-run: no system LibTorch (libtorch-dev)"; exit 1; }

# The chain's tiny models, and the face-sr fixtures as GFPGAN, RetinaFace
# and ParseNet under their released names.
models="$tmp/models"
mkdir -p "$models"
for f in tests/data/chain/*; do ln -s "$PWD/$f" "$models/"; done
ln -s "$PWD/tests/data/face-sr/gfpgan_tiny.pth" "$models/GFPGANv1.4.pth"
ln -s "$PWD/tests/data/face-sr/retinaface_narrow.pth" "$models/detection_Resnet50_Final.pth"
ln -s "$PWD/tests/data/face-sr/parsenet_tiny.pth" "$models/parsing_parsenet.pth"

PYTHONPATH="$tmp${PYTHONPATH:+:$PYTHONPATH}" DEVICE=cpu TORCH_INCLUDE="$api" TORCH_LIB="$lib" \
  STEPS="${STEPS:-latency streams}" LIVE_MODELS="$models" LIVE_SECONDS="${LIVE_SECONDS:-5}" \
  STREAMS="${STREAMS:-1,2}" SR_STREAMS="${SR_STREAMS:-1}" bash tests/device/run.sh "$out"
# run.sh ends 0 whatever its steps did; each step's exit is in the log.
if grep -E '^=== .*: exit [1-9]' "$out/run.log"; then
  echo "dry-run: a step failed (above; $out/run.log)"
  exit 1
fi
grep -q '^=== .* done$' "$out/run.log" || { echo "dry-run: run.sh did not finish ($out/run.log)"; exit 1; }
echo "dry-run: every step exited 0 ($out/run.log)"
