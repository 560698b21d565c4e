// Released model files (models.h).
#include "models.h"

#include <sys/stat.h>

#include <cerrno>
#include <unistd.h>

#include <map>

#include "error.h"
#include "tensor_data.h"

namespace anitalker::models {

namespace {

const char* const kCkpts = "https://huggingface.co/taocode/anitalker_ckpts/resolve/main/";
const char* const kHubert = "https://huggingface.co/TencentGameMate/chinese-hubert-large/resolve/main/";

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

const std::vector<Released>& released() {
  static const std::vector<Released> table = [] {
    std::vector<Released> t;
    // The digests: the Git LFS pointers of the authors' upload commits on
    // Hugging Face (stage1.ckpt also in a mirror; stage2_full_control_mfcc.ckpt
    // was uploaded as stage2_more_controllable_mfcc.ckpt and renamed without
    // changes; chinese-hubert-large/pytorch_model.bin from TencentGameMate's
    // "Upload pytorch_model.bin" commit), the two small JSON files from their
    // published digests, which their content and sizes as shown on Hugging
    // Face reproduce, and for the face restoration files the many public
    // manifests that agree.  None could be checked against the files here.
    t.push_back({"stage1.ckpt", "required", "anitalkerrender (every variant)", std::string(kCkpts) + "stage1.ckpt",
                 "cb07be497b8c3e6c32a0b6f960d958a1e03d3ee82982f6f1e7bc972077d3f36f"});
    const std::map<std::string, std::string> stage2_sha256 = {
        {"hubert_audio_only", "7b9c6c027ff8bfc2b9ab2531d68eb52d9c2e89bbde67cea271ff67a89c2a436e"},
        {"hubert_pose_only", "b0e18c9cb2c2f6c3a31aa498c4871cea3f70bed5d24165537b7e044784102ed0"},
        {"hubert_full_control", "cf5783a946f69eaf5ec3baa31677838c7af8bbdd5986258e070326d962125a2b"},
        {"mfcc_pose_only", "c0c27b3e4d3282f4a62ed1ab1e3bb983004d0b39238c66135973874101f1f459"},
        {"mfcc_full_control", "6e6746d2e50def9cda65f96edf748ac158c5a8dc3743c86584381dd8e760a177"},
    };
    for (const std::string& v : variants()) {
      const std::string f = stage2_name(v);
      const auto sha = stage2_sha256.find(v);
      t.push_back({f, v == variants()[0] ? "required" : "variant",
                   "variant " + v + (v == variants()[0] ? " (the default)" : ""), kCkpts + f,
                   sha == stage2_sha256.end() ? "" : sha->second});
    }
    const std::pair<const char*, const char*> hubert[] = {
        {"config.json", "8511d73054ac289ef47a527efdfd6738d2cb60f69f2973fdc9277492d9ff854b"},
        {"preprocessor_config.json", "6334d6e0c5f2084c9a99b85ddff243cbc79dbaa4aa790bcddf8c41c496fab6fb"},
        {"pytorch_model.bin", "482c19cd60877832995d790ed10dd1203b1f8c86ed7a69b4bd27f470fc27ee43"},
    };
    for (const auto& [f, sha] : hubert)
      t.push_back({std::string("chinese-hubert-large/") + f, "required", "hubertenc (hubert_* variants)",
                   kHubert + std::string(f), sha});
    t.push_back({"GFPGANv1.4.pth", "face-sr", "gfpgansr (face restoration)",
                 "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth",
                 "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad"});
    t.push_back({"detection_Resnet50_Final.pth", "face-sr", "gfpgansr face detection; anitalkerrender crop=auto",
                 "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
                 "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d"});
    t.push_back({"parsing_parsenet.pth", "face-sr", "gfpgansr paste-back mask",
                 "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
                 "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2"});
    return t;
  }();
  return table;
}

std::string manifest() {
  std::string s =
      "# file (under models/)\tgroup\tneeded by\turl\tsha256 (- = not known)   (written by `anitalker models "
      "--manifest`)\n";
  for (const Released& r : released())
    s += r.path + "\t" + r.group + "\t" + r.needed + "\t" + r.url + "\t" + (r.sha256.empty() ? "-" : r.sha256) + "\n";
  return s;
}

namespace {

// The download of a file of the table, by its path under the models folder.
std::string url_of(const std::string& path) {
  for (const Released& r : released())
    if (r.path == path) return r.url;
  return "";
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
  s.files.push_back({s.stage1, "anitalkerrender (every variant)", url_of("stage1.ckpt")});
  s.files.push_back({s.stage2, "variant " + variant, url_of(s2)});
  if (uses_hubert(variant)) {
    s.hubert_dir = join(dir, "chinese-hubert-large");
    // What hubertenc reads (preprocessor_config.json holds nothing it needs).
    for (const char* f : {"config.json", "pytorch_model.bin"})
      s.files.push_back({join(s.hubert_dir, f), "hubertenc (hubert_* variants)",
                         url_of(std::string("chinese-hubert-large/") + f)});
  }
  if (face_sr) {
    s.gfpgan = join(dir, "GFPGANv1.4.pth");
    s.detector = join(dir, "detection_Resnet50_Final.pth");
    s.parser = join(dir, "parsing_parsenet.pth");
    s.files.push_back({s.gfpgan, "gfpgansr (face-sr)", url_of("GFPGANv1.4.pth")});
    s.files.push_back({s.detector, "gfpgansr face detection (face-sr)", url_of("detection_Resnet50_Final.pth")});
    s.files.push_back({s.parser, "gfpgansr paste-back mask (face-sr)", url_of("parsing_parsenet.pth")});
  }
  if (detect && s.detector.empty()) {
    s.detector = join(dir, "detection_Resnet50_Final.pth");
    s.files.push_back({s.detector, "anitalkerrender face detection (crop=auto)", url_of("detection_Resnet50_Final.pth")});
  }
  return s;
}

std::string why_unusable(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return "";
  if (S_ISLNK(st.st_mode) && ::stat(path.c_str(), &st) != 0) {
    const bool loop = errno == ELOOP;
    char target[4096];
    const ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    return std::string(loop ? ": a loop of links" : ": a link to nothing") +
           (n > 0 ? " (" + std::string(target, static_cast<size_t>(n)) + ")" : "");
  }
  if (S_ISDIR(st.st_mode)) return ": a folder, not a file";
  if (!S_ISREG(st.st_mode)) return std::string(": ") + file_kind(st.st_mode) + ", not a regular file";
  return "";
}

std::vector<File> missing(const Set& set) {
  std::vector<File> out;
  for (const File& f : set.files)
    if (!exists(f.path)) out.push_back(f);
  return out;
}

std::string describe_missing(const std::vector<File>& files, const std::string& dir) {
  std::string s;
  // Only when a missing file was looked for there (not for files named
  // one by one elsewhere).
  bool under = false;
  for (const File& f : files) under = under || (!dir.empty() && f.path.rfind(join(dir, ""), 0) == 0);
  struct stat st;
  if (under && ::stat(dir.c_str(), &st) != 0)
    s = "the models folder " + dir + " does not exist; ";
  else if (under && !S_ISDIR(st.st_mode))
    s = "the models folder " + dir + " is not a folder; ";
  s += "missing model file" + std::string(files.size() == 1 ? "" : "s") +
       " (see models/README.md; models/fetch.sh downloads them):";
  for (const File& f : files) s += "\n  " + f.path + "  (" + f.needed + ")" + why_unusable(f.path) + "\n      from " + f.source;
  return s;
}

}  // namespace anitalker::models
