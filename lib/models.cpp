// Released model files (models.h).
#include "models.h"

#include <sys/stat.h>

#include "error.h"

namespace anitalker::models {

namespace {

const char* const kCkpts = "https://huggingface.co/taocode/anitalker_ckpts";
const char* const kHubert = "https://huggingface.co/TencentGameMate/chinese-hubert-large";
const char* const kGfpgan = "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth";
const char* const kDetector =
    "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth";
const char* const kParser = "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth";

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

const std::vector<std::string>& variants() {
  static const std::vector<std::string> v = {"hubert_audio_only", "hubert_pose_only", "hubert_full_control",
                                             "mfcc_pose_only", "mfcc_full_control"};
  return v;
}

bool is_variant(const std::string& name) {
  for (const std::string& v : variants())
    if (v == name) return true;
  return false;
}

bool uses_hubert(const std::string& variant) { return variant.rfind("hubert_", 0) == 0; }

std::string stage2_name(const std::string& variant) {
  if (!is_variant(variant)) {
    std::string all;
    for (const std::string& v : variants()) all += (all.empty() ? "" : ", ") + v;
    throw Error(Error::Kind::Usage, "unknown variant \"" + variant + "\" (one of " + all + ")");
  }
  // hubert_audio_only -> stage2_audio_only_hubert.ckpt
  const size_t us = variant.find('_');
  return "stage2_" + variant.substr(us + 1) + "_" + variant.substr(0, us) + ".ckpt";
}

Set resolve(const std::string& dir, const std::string& variant, bool face_sr, bool detect) {
  Set s;
  const std::string s2 = stage2_name(variant);
  s.stage1 = join(dir, "stage1.ckpt");
  s.stage2 = join(dir, s2);
  s.files.push_back({s.stage1, "anitalkerrender (every variant)", std::string(kCkpts) + " (stage1.ckpt)"});
  s.files.push_back({s.stage2, "variant " + variant, std::string(kCkpts) + " (" + s2 + ")"});
  if (uses_hubert(variant)) {
    s.hubert_dir = join(dir, "chinese-hubert-large");
    // What hubertenc reads (preprocessor_config.json holds nothing it needs).
    for (const char* f : {"config.json", "pytorch_model.bin"})
      s.files.push_back({join(s.hubert_dir, f), "hubertenc (hubert_* variants)", kHubert});
  }
  if (face_sr) {
    s.gfpgan = join(dir, "GFPGANv1.4.pth");
    s.detector = join(dir, "detection_Resnet50_Final.pth");
    s.parser = join(dir, "parsing_parsenet.pth");
    s.files.push_back({s.gfpgan, "gfpgansr (face-sr)", kGfpgan});
    s.files.push_back({s.detector, "gfpgansr face detection (face-sr)", kDetector});
    s.files.push_back({s.parser, "gfpgansr paste-back mask (face-sr)", kParser});
  }
  if (detect && s.detector.empty()) {
    s.detector = join(dir, "detection_Resnet50_Final.pth");
    s.files.push_back({s.detector, "anitalkerrender face detection (crop=auto)", kDetector});
  }
  return s;
}

std::vector<File> missing(const Set& set) {
  std::vector<File> out;
  for (const File& f : set.files)
    if (!exists(f.path)) out.push_back(f);
  return out;
}

std::string describe_missing(const std::vector<File>& files) {
  std::string s = "missing model file" + std::string(files.size() == 1 ? "" : "s") +
                  " (see models/README.md; models/fetch.sh downloads them):";
  for (const File& f : files) s += "\n  " + f.path + "  (" + f.needed + ")\n      from " + f.source;
  return s;
}

}  // namespace anitalker::models
