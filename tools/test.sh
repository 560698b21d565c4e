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
echo "tests: ${ok:-0} passed, $(( ${fail:-0} + ${timeout:-0} )) failed, ${skipped:-0} skipped"
if [ "${ok:-0}" -eq 0 ]; then
  echo "tests: no test passed: is $builddir configured with -Dtests=true?" >&2
  exit 1
fi
exit "$rc"
