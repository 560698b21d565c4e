#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (ccache, release),
# runs every test, and ends with one line "N passed, N failed, N skipped".
# BUILDDIR (default: build) picks the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh

builddir=${BUILDDIR:-build}
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
if [ ! -f "$builddir/build.ninja" ]; then
  meson setup "$builddir" -Dtests=true
else
  # A folder configured earlier with tests off would build and run nothing.
  meson configure "$builddir" -Dtests=true
fi
ninja -C "$builddir"

set +e
meson test -C "$builddir" --print-errorlogs --num-processes 2 2>&1 | tee "$builddir/test-output.txt"
rc=${PIPESTATUS[0]}
set -e
count() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$builddir/test-output.txt" | tail -n 1; }
ok=$(count Ok)
fail=$(count Fail)
timeout=$(count Timeout)
skipped=$(count Skipped)
# The CPU, for results that depend on its kernels (AVX2 and AVX-512 sum in
# other orders; bf16 tests skip without AVX512_BF16).
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
isa=$(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ')
echo "tests ran on: ${cpu:-an unknown CPU}, $(nproc) cores; ${isa:-neither AVX2 nor AVX-512}"
echo "tests: ${ok:-0} passed, $(( ${fail:-0} + ${timeout:-0} )) failed, ${skipped:-0} skipped"
if [ "${ok:-0}" -eq 0 ]; then
  echo "tests: no test passed: is $builddir configured with -Dtests=true?" >&2
  exit 1
fi
exit "$rc"
