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
# One element shape: the four stream elements derive from GstAnitalkerElement,
# and mode is one enum wherever it appears (the bin sets it by value).
for e in hubertenc anitalkermotion anitalkerrender anitalkerpaste; do
  gst-inspect-1.0 "$e" | grep -q "GstAnitalkerElement" || { echo "$e does not derive from GstAnitalkerElement"; exit 1; }
done
for e in hubertenc anitalkermotion anitalker; do
  gst-inspect-1.0 "$e" | grep -q 'Enum "GstAnitalkerMode"' || { echo "$e: mode is not a GstAnitalkerMode"; exit 1; }
done
# Common properties are documented with ranges and defaults the same way.
for e in hubertenc anitalkermotion anitalkerrender gfpgansr; do
  gst-inspect-1.0 "$e" | grep -A2 "^  num-threads" | grep -q "Range: 0 - 64 Default: 0" ||
    { echo "$e: num-threads without its range"; exit 1; }
done
# The bin offers only the variants it can find files for (no auto).
variants=$(gst-inspect-1.0 anitalker | sed -n '/^  variant /,/^  [a-z]/p')
echo "$variants" | grep -q "mfcc_full_control" || { echo "the bin's variant: no values listed"; exit 1; }
echo "$variants" | grep -q ": auto " && { echo "the bin's variant offers auto, which it cannot use"; exit 1; }
# Every flag gst-inspect shows has a name: the project's own marks (a
# property that changes the latency) stay off the spec's flags.
for e in hubertenc anitalkermotion anitalkerrender gfpgansr anitalkerpaste anitalker; do
  gst-inspect-1.0 "$e" | grep "flags:" | grep -q "0x" && { echo "$e: a flag gst-inspect prints as a number"; exit 1; }
done
echo ok
