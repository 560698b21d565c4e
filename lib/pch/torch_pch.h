// Precompiled header for the translation units that use LibTorch: ATen is
// the costly parse (~7 s a file on these machines).
#include <ATen/ATen.h>
