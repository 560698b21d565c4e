// The released model files under their published names (models/README.md):
// which file each variant and stage needs and where it comes from.  One
// table, used by the `anitalker` bin, `anitalker generate` and the set-up
// script's manifest (models/manifest.tsv must list the same files).
// Torch-free.
//
// released() is the one list of the files: models/manifest.tsv is its
// manifest() (a test compares them), models/fetch.sh downloads from the
// manifest and tools/setup.sh checks against it.
#pragma once

#include <string>
#include <vector>

namespace anitalker::models {

// The reference's infer_type names, hubert_audio_only first (the default).
const std::vector<std::string>& variants();
bool is_variant(const std::string& name);
bool uses_hubert(const std::string& variant);  // hubert_* variants

// "stage2_audio_only_hubert.ckpt" for "hubert_audio_only", and so on.
std::string stage2_name(const std::string& variant);

// A released file: its path under the models folder, who needs it, and its
// direct download.  group: "required" (the default job: stage 1, the
// hubert_audio_only variant, HuBERT), "variant" (the other four stage-2
// checkpoints), "face-sr" (face restoration; RetinaFace also serves
// crop=auto).
struct Released {
  std::string path, group, needed, url;
  // The SHA-256 of the file as published (64 hex digits), or empty where
  // this project has not been able to read it from a source it trusts.
  std::string sha256;
};
const std::vector<Released>& released();

// The table as models/manifest.tsv: a comment line, then one line a file:
// path, group, needed by, url, sha256 ("-" when unknown), tab-separated.
std::string manifest();

struct File {
  std::string path;    // under the models folder (or as given)
  std::string needed;  // what needs it
  std::string source;  // where it is published
};

// The files of a run: stage1, the variant's stage 2, HuBERT's folder for the
// hubert variants (config.json and pytorch_model.bin are checked)
// and, with face_sr, GFPGAN, RetinaFace and ParseNet; with detect (crop=auto
// without a face box), RetinaFace.  Paths are dir/name.
struct Set {
  std::string stage1, stage2, hubert_dir;  // hubert_dir empty for mfcc variants
  std::string gfpgan, parser;              // empty without face_sr
  std::string detector;                    // empty without face_sr or detect
  std::vector<File> files;                 // every file above, for checks
};
// Throws anitalker::Error (Usage) for an unknown variant, naming the five.
Set resolve(const std::string& dir, const std::string& variant, bool face_sr, bool detect = false);

// The files of `set` that do not exist, in order.
std::vector<File> missing(const Set& set);

// "Missing model files ...: each path, what needs it, where it comes from."
// With `dir` (the models folder the paths were made from): first says
// when that folder does not exist or is not a folder, the likely cause.
std::string describe_missing(const std::vector<File>& files, const std::string& dir = "");

// Why `path`, which is not a regular file, is not taken as one: ": a link
// to nothing (TARGET)", ": a pipe (FIFO), not a regular file", ": a
// folder, not a file", ...; "" when nothing is there at all.
std::string why_unusable(const std::string& path);

}  // namespace anitalker::models
