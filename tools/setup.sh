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
  echo "$missing file(s) missing."
  exit 0
fi
echo "All model files are present."
# The main job (speech + portrait -> MP4) is `anitalker generate`; it arrives
# with the end-to-end work.  Until then the stages run one by one.
if "$builddir/tools/anitalker" generate --help >/dev/null 2>&1; then
  "$builddir/tools/anitalker" generate --portrait "${PORTRAIT:?set PORTRAIT=face.jpg}" --audio "${AUDIO:?set AUDIO=speech.wav}" \
    --models-dir models --out "${OUT:-out.mp4}"
else
  echo "This build has no 'anitalker generate' yet: see README.md for what runs today."
fi
