#!/bin/sh
# gst-inspect-1.0 finds the plugin in the build folder through
# GST_PLUGIN_PATH_1_0 (set by meson test, as docs/building.md describes).
set -eu
out=$(gst-inspect-1.0 anitalker)
echo "$out"
echo "$out" | grep -q "Name *anitalker"
echo "$out" | grep -q "Version *$1"
echo "$out" | grep -q "Source module *anitalker-gst"
# and it loads cleanly from the registry listing, not only by name
gst-inspect-1.0 -b | grep -q "anitalker" && { echo "plugin blacklisted"; exit 1; }
echo ok
