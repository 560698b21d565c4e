#!/usr/bin/env bash
# The unit and harness tests under AddressSanitizer and UndefinedBehavior-
# Sanitizer (docs/reliability.md): configures a sanitized build (meson's
# b_sanitize option), builds what those tests need and runs them with
# `meson test --setup sanitize` (tests/meson.build: the plugin loaded in the
# test process, LeakSanitizer at exit with tests/lsan.supp, the first UBSan
# report fatal).  Not part of the default suite: the build alone takes about
# 10 minutes on 2 cores, the run 10 more.
#   tests/sanitize.sh [BUILD_DIR]     (default: build-sanitize)
set -euo pipefail
cd "$(dirname "$0")/.."
builddir=${1:-build-sanitize}
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
if [ ! -f "$builddir/build.ninja" ]; then
  # -O1 -g1: fast enough to run, line tables for the reports.
  meson setup "$builddir" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=plain \
    -Dcpp_args="['-O1','-g1']" -Dfuzzing=disabled -Dtests=true
fi
# Only what the lib and harness suites run (not the CLI, pipelines or fuzzers).
targets=$(meson introspect --tests "$builddir" | python3 -c '
import json, os, sys
root = os.path.abspath(sys.argv[1])
for t in json.load(sys.stdin):
    if {"lib", "harness"} & {s.split(":")[-1] for s in t["suite"]}:
        print(os.path.relpath(t["cmd"][0], root))
' "$builddir")
ninja -C "$builddir" gst/libgstanitalker.so $targets
meson test -C "$builddir" --no-rebuild --setup sanitize --suite lib --suite harness --print-errorlogs \
  --num-processes 2
