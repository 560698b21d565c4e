#!/usr/bin/env bash
# Set-up on a fresh Debian 12 machine: installs the packages, builds
# anitalker-gst (plugin, library, `anitalker` tool) into build/, then checks
# models/ and says which released files are missing and where they come from.
# MODELS= names another models folder (default: models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh --run
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
builddir=${BUILDDIR:-build}
# The tests need more packages (tools/test.sh installs them and turns them on).
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" -Dtests=false
ninja -C "$builddir"

echo
echo "Built: $builddir/tools/anitalker and the GStreamer plugin in $builddir/gst."
echo "  export GST_PLUGIN_PATH_1_0=$PWD/$builddir/gst   # then: gst-inspect-1.0 $builddir/gst/libgstanitalker.so"
echo

# models/manifest.tsv (the table of lib/models.cpp; `anitalker models` prints
# the same): the group "required" is what the default job needs (variant
# hubert_audio_only, no face restoration); the rest is optional.
models=${MODELS:-models}
missing_required=0
missing_optional=()
while IFS=$'\t' read -r file group needed source sha; do
  case "$file" in ''|'#'*) continue ;; esac
  [ -f "$models/$file" ] && continue
  if [ "$group" = required ]; then
    [ $missing_required -eq 0 ] && echo "Missing model files that the default job needs (put them under $models/, see models/README.md):"
    missing_required=$((missing_required + 1))
    printf '  %s/%-48s %s\n      from %s\n' "$models" "$file" "$needed" "$source"
  else
    missing_optional+=("$file ($needed)")
  fi
done < models/manifest.tsv
if [ ${#missing_optional[@]} -gt 0 ]; then
  echo "Optional, not present (other variants, --face-sr):"
  for f in "${missing_optional[@]}"; do echo "  $models/$f"; done
fi
if [ $missing_required -gt 0 ]; then
  echo "$missing_required required file(s) missing: models/fetch.sh downloads them (needs network access)."
  exit 0
fi
echo "The models the default job needs are present."
# The main job: speech + portrait -> MP4.  Without PORTRAIT and AUDIO, a
# sample: the reference's demo portrait (the Mona Lisa, a public-domain
# painting) and a 2 s espeak-ng sentence made for this project.
portrait=${PORTRAIT:-tests/data/renderer/monalisa.jpg}
audio=${AUDIO:-tests/data/audio/speech_2s_16k.wav}
out=${OUT:-sample.mp4}
echo "Generating $out from $portrait and $audio (PORTRAIT=, AUDIO=, OUT= choose others):"
"$builddir/tools/anitalker" generate --portrait "$portrait" --audio "$audio" --models-dir "$models" --out "$out"
