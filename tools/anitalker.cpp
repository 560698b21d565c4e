// anitalker: runs the stages of anitalker-gst without GStreamer, for users,
// tests and benchmarks.  One subcommand per stage; `bench` holds the
// benchmarks.  Exit codes: 0 success, 1 failure, 2 usage error.
// Built with ANITALKER_CLI_NO_MEDIA (tests/device/run.sh), it keeps only what
// needs LibTorch and OpenCV's core alone: no GStreamer, no image files; with
// ANITALKER_CLI_LIVE too, it adds the live benchmarks (GStreamer's core and
// the plugin, still no image files or encoders: run.sh's `live` step).
#include <cstdio>
#include <cstring>
#include <string>

#include "device.h"

int cmd_check(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_models(int argc, char** argv);
#ifndef ANITALKER_CLI_NO_MEDIA
int cmd_render(int argc, char** argv);
int cmd_features(int argc, char** argv);
int cmd_generate(int argc, char** argv);
#endif
#if defined(ANITALKER_HAVE_WEBRTC) && !defined(ANITALKER_CLI_NO_MEDIA)
int cmd_webrtc(int argc, char** argv);
#endif
int cmd_motion(int argc, char** argv);
#ifndef ANITALKER_CLI_NO_MEDIA
int cmd_sr(int argc, char** argv);
int cmd_crop(int argc, char** argv);
#endif
int bench_load(int argc, char** argv);
int bench_render(int argc, char** argv);
int bench_features(int argc, char** argv);
int bench_motion(int argc, char** argv);
int bench_chain_fixtures(int argc, char** argv);
int bench_random_models(int argc, char** argv);
#if !defined(ANITALKER_CLI_NO_MEDIA) || defined(ANITALKER_CLI_LIVE)
int bench_soak(int argc, char** argv);
int bench_latency(int argc, char** argv);
int bench_streams(int argc, char** argv);
#endif
int bench_sr(int argc, char** argv);

namespace {

struct Command {
  const char* name;
  int (*fn)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"check", cmd_check, "a GPU against the CPU: every network at full size, random weights, same inputs"},
#ifndef ANITALKER_CLI_NO_MEDIA
    {"features", cmd_features, "audio features: HuBERT hidden states or MFCC+deltas of a speech file"},
    {"generate", cmd_generate, "portrait + speech -> MP4 (H.264 + AAC): the reference demo's job in one command"},
#endif
    {"inspect", cmd_inspect, "list the tensors of a checkpoint or safetensors file"},
    {"models", cmd_models, "the released model files: which a models folder has, where they come from"},
    {"motion", cmd_motion, "stage 2: audio features + portrait codes -> motion latents (diffusion)"},
#if defined(ANITALKER_HAVE_WEBRTC) && !defined(ANITALKER_CLI_NO_MEDIA)
    {"webrtc", cmd_webrtc, "the talking portrait to a browser over WebRTC (serves the page itself)"},
#endif
#ifndef ANITALKER_CLI_NO_MEDIA
    {"render", cmd_render, "stage 1: portrait + motion codes -> frames (LIA renderer)"},
    {"sr", cmd_sr, "GFPGAN face restoration of an image: detect, align, restore, paste into the upscaled image"},
    {"crop", cmd_crop, "the square the networks see, cut around the face of any photo (the authors' rule), and its box"},
#endif
};

// Writers of model files with random weights: not benchmarks.
const Command kFixtures[] = {
    {"chain", bench_chain_fixtures, "the tiny random models that chain end to end (tests/data/chain)"},
    {"random", bench_random_models, "the released files at full size with random weights (benchmarks, trying the tools)"},
};

const Command kBenches[] = {
    {"features", bench_features, "HuBERT-large at full size and MFCC: ms per second of audio, fraction of the float32 roof"},
    {"load", bench_load, "checkpoint loading: a HuBERT-large-sized file, open and read times, memory"},
    {"motion", bench_motion, "stage 2 at full size: denoiser pass, offline and streaming sampling, fraction of the float32 roof"},
#if !defined(ANITALKER_CLI_NO_MEDIA) || defined(ANITALKER_CLI_LIVE)
    {"soak", bench_soak, "a long stream through the whole chain: memory over time, frame latency, frame count"},
    {"latency", bench_latency, "the live chain against the clock per latency preset: first frame, p50/p95/max, late"},
    {"streams", bench_streams, "N live pipelines in one process: frames late, delay p50/p95, aggregate fps, memory"},
#endif
    {"render", bench_render, "stage 1 at full size: encoder time, frames per second by batch, fraction of the float32 roof"},
    {"sr", bench_sr, "face restoration at full size: GFPGAN, ParseNet, RetinaFace and the filter, fraction of the float32 roof"},
};

// Commands and benchmarks some builds leave out, and why: said instead of
// "unknown command".
struct Absent {
  const char* name;
  const char* why;
};
#ifdef ANITALKER_CLI_NO_MEDIA
constexpr const char* kNoMedia =
    "is not in this build of the tool: it was built without GStreamer and image files (meson's "
    "-Dgstreamer=disabled, or tests/device/run.sh); a build with GStreamer (-Dgstreamer=enabled) has it";
#endif
const Absent kAbsentCommands[] = {
#ifdef ANITALKER_CLI_NO_MEDIA
    {"features", kNoMedia}, {"generate", kNoMedia}, {"render", kNoMedia},
    {"sr", kNoMedia},       {"crop", kNoMedia},     {"webrtc", kNoMedia},
#elif !defined(ANITALKER_HAVE_WEBRTC)
    {"webrtc",
     "is not in this build of the tool: it needs GStreamer's WebRTC and SDP libraries at build time (Debian: "
     "libgstreamer-plugins-bad1.0-dev), then a new meson setup"},
#endif
    {nullptr, nullptr},
};
const Absent kAbsentBenches[] = {
#if defined(ANITALKER_CLI_NO_MEDIA) && !defined(ANITALKER_CLI_LIVE)
    {"soak", kNoMedia}, {"latency", kNoMedia}, {"streams", kNoMedia},
#endif
    {nullptr, nullptr},
};

// A name of `table` (ended by a null name): its reason, else null.
const char* absent(const Absent* table, const std::string& name) {
  for (; table->name; ++table)
    if (name == table->name) return table->why;
  return nullptr;
}

void usage(FILE* f) {
  std::fprintf(f, "usage: anitalker COMMAND [ARGS...]   (anitalker COMMAND --help for its options; anitalker --version)\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(f, "  %-10s %s\n", c.name, c.help);
  std::fprintf(f, "  %-10s %s\n", "bench", "benchmarks (anitalker bench --help)");
  std::fprintf(f, "  %-10s %s\n", "fixtures", "model files with random weights (anitalker fixtures --help)");
}

int sub(const char* what, const Command* table, size_t n, int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::FILE* f = argc < 2 ? stderr : stdout;
    std::fprintf(f, "usage: anitalker %s KIND [ARGS...]\n\n", what);
    for (size_t i = 0; i < n; ++i) std::fprintf(f, "  %-10s %s\n", table[i].name, table[i].help);
    return argc < 2 ? 2 : 0;
  }
  for (size_t i = 0; i < n; ++i)
    if (!std::strcmp(argv[1], table[i].name)) return table[i].fn(argc - 1, argv + 1);
  std::fprintf(stderr, "anitalker %s: unknown kind '%s'\n", what, argv[1]);
  return 2;
}

int bench(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::FILE* f = argc < 2 ? stderr : stdout;
    std::fprintf(f, "usage: anitalker bench STAGE [ARGS...]\n\nstages:\n");
    for (const Command& c : kBenches) std::fprintf(f, "  %-10s %s\n", c.name, c.help);
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : kBenches)
    if (!std::strcmp(argv[1], c.name)) return c.fn(argc - 1, argv + 1);
  if (const char* why = absent(kAbsentBenches, argv[1])) {
    std::fprintf(stderr, "anitalker bench: '%s' %s\n", argv[1], why);
    return 2;
  }
  std::fprintf(stderr, "anitalker bench: unknown stage '%s'\n", argv[1]);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  anitalker::cache_cpu_memory();  // lib/device.h: freed tensor memory is reused
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "-V") {
    std::printf("anitalker %s (%s)\n", ANITALKER_VERSION, anitalker::torch_info().c_str());
    return 0;
  }
  if (cmd == "bench") return bench(argc - 1, argv + 1);
  if (cmd == "fixtures") return sub("fixtures", kFixtures, sizeof kFixtures / sizeof kFixtures[0], argc - 1, argv + 1);
  for (const Command& c : kCommands)
    if (cmd == c.name) return c.fn(argc - 1, argv + 1);
  if (const char* why = absent(kAbsentCommands, cmd)) {
    std::fprintf(stderr, "anitalker: '%s' %s\n", cmd.c_str(), why);
    return 2;
  }
  std::fprintf(stderr, "anitalker: unknown command '%s'\n", cmd.c_str());
  usage(stderr);
  return 2;
}
