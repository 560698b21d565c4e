#!/usr/bin/env bash
# Set-up on a fresh Debian 12 machine: installs the packages, builds
# anitalker-gst (plugin, library, `anitalker` tool) into build/, then checks
# models/ and says which released files are missing and where they come from.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
builddir=${BUILDDIR:-build}
[ -f "$builddir/build.ninja" ] || meson setup "$builddir"
ninja -C "$builddir"

echo
echo "Built: $builddir/tools/anitalker and the GStreamer plugin in $builddir/gst."
echo "  export GST_PLUGIN_PATH_1_0=$PWD/$builddir/gst   # then: gst-inspect-1.0 anitalker"
echo

missing=0
while IFS=$'\t' read -r file needed source; do
  case "$file" in ''|'#'*) continue ;; esac
  if [ ! -f "models/$file" ]; then
    [ $missing -eq 0 ] && echo "Missing model files (put them under models/, see models/README.md):"
    missing=$((missing + 1))
    printf '  models/%-48s %s\n      from %s\n' "$file" "$needed" "$source"
  fi
done < models/manifest.tsv
if [ $missing -gt 0 ]; then
  echo "$missing file(s) missing: models/fetch.sh downloads them (needs network access)."
  exit 0
fi
echo "All model files are present."
# The main job: speech + portrait -> MP4.
if [ -n "${PORTRAIT:-}" ] && [ -n "${AUDIO:-}" ]; then
  "$builddir/tools/anitalker" generate --portrait "$PORTRAIT" --audio "$AUDIO" --models-dir models --out "${OUT:-out.mp4}"
else
  echo "Next: $builddir/tools/anitalker generate --portrait face.jpg --audio speech.wav --out out.mp4"
  echo "  (or run this script with PORTRAIT=face.jpg AUDIO=speech.wav [OUT=out.mp4])"
fi
