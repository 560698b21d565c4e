// anitalker fixtures chain DIR: writes the tiny models that chain end
// to end (tests/data/chain): a HuBERT of 24 layers of width 32, the five
// stage-2 variants for its 25 x 32 features, and a 64x64 stage 1 whose
// codes fit them, all with random weights (fixed seeds) in the released
// layouts under the released names.  The stage fixtures of tests/data do
// not chain (their HuBERT is 4 x 64, their renderer's codes 24 wide), so the
// end-to-end tests use these.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_models.h"
#include "cli.h"
#include "models.h"
#include "motion.h"

namespace {

// DIR may be a models folder that holds the released files (1-2 GB each to
// fetch again): refuse to put random weights over any file that is there,
// naming them, unless --force.  A DIR that cannot be made, or that is not a
// folder, is named too.
void prepare_folder(const std::string& cmd, const std::string& dir, const std::vector<std::string>& names,
                    bool force) {
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    throw std::runtime_error(dir + ": cannot make the folder (" + std::strerror(errno) + ")");
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw cli::UsageError(dir + ": is not a folder; fixtures " + cmd + " writes model files into a folder");
  if (force) return;
  std::string there;
  size_t count = 0;
  for (const std::string& n : names) {
    if (::lstat((dir + "/" + n).c_str(), &st) != 0) continue;
    there += (count++ ? ", " : "") + n;
  }
  if (count)
    throw cli::UsageError(dir + " already holds " + there + "; fixtures " + cmd +
                          " would replace " + (count > 1 ? "them" : "it") +
                          " with random weights. Give another folder, or --force to replace " +
                          (count > 1 ? "them" : "it"));
}

const char* const kHubertFiles[] = {"chinese-hubert-large/pytorch_model.bin", "chinese-hubert-large/config.json",
                                    "chinese-hubert-large/preprocessor_config.json"};

using anitalker::motion::Variant;
const Variant kVariants[] = {Variant::HubertAudioOnly, Variant::HubertPoseOnly, Variant::HubertFullControl,
                             Variant::MfccPoseOnly, Variant::MfccFullControl};

std::string stage2_file(Variant v) { return anitalker::models::stage2_name(anitalker::motion::variant_name(v)); }

std::vector<std::string> stage_files() {
  std::vector<std::string> names{"stage1.ckpt"};
  for (Variant v : kVariants) names.push_back(stage2_file(v));
  return names;
}

const char* const kGfpgan = "GFPGANv1.4.pth";
const char* const kRetinaface = "detection_Resnet50_Final.pth";
const char* const kParsenet = "parsing_parsenet.pth";

}  // namespace

int bench_chain_fixtures(int argc, char** argv) {
  return cli::run("fixtures chain", [&] {
    std::string dir;
    bool force = false;
    cli::Options o("fixtures chain", "Writes stage1.ckpt, stage2_*.ckpt and chinese-hubert-large/ (tiny, random "
                                     "weights, the released layouts) into DIR: the models of tests/data/chain. "
                                     "Files already in DIR are not replaced without --force.");
    o.positional("DIR", &dir, "the folder to write (made if missing)");
    o.flag("force", &force, "replace the model files DIR already holds");
    if (!o.parse(argc, argv)) return 0;
    std::vector<std::string> names = stage_files();
    names.insert(names.end(), std::begin(kHubertFiles), std::end(kHubertFiles));
    prepare_folder("chain", dir, names, force);

    bench::HubertShape hubert;
    hubert.layers = 24;
    hubert.heads = 2;
    hubert.conv = 32;
    hubert.hidden = 32;
    hubert.ffn = 64;
    hubert.pos_kernel = 16;
    hubert.pos_groups = 4;
    bench::write_hubert(dir + "/chinese-hubert-large", hubert);

    bench::Stage2Shape s2;
    s2.hubert = 32;
    s2.speech = 24;
    s2.proj = 8;
    s2.start = 32;
    s2.lstm = 16;
    s2.mfcc_mid = 16;
    s2.x_T = {1, 3, 8, 8};
    for (Variant v : kVariants) bench::write_stage2(dir + "/" + stage2_file(v), v, s2);

    bench::Stage1Shape s1;
    s1.size = 64;
    s1.style = 32;
    s1.channels = [](int64_t res) -> int64_t { return res >= 64 ? 8 : 16; };
    bench::write_stage1(dir + "/stage1.ckpt", s1);
    std::fprintf(stderr, "anitalker fixtures chain: wrote %s\n", dir.c_str());
    return 0;
  });
}

// anitalker fixtures random DIR [--hubert] [--face-sr]: the released files at full
// size with random weights (fixed seeds), under the released names: for
// trying the tools and pipelines before the real files are fetched, and for
// the docs' pictures (labelled as such: random weights draw no face).
int bench_random_models(int argc, char** argv) {
  return cli::run("fixtures random", [&] {
    std::string dir;
    bool hubert = false, face_sr = false, force = false;
    cli::Options o("fixtures random",
                   "Writes stage1.ckpt and the five stage2_*.ckpt at full size with random weights into DIR (for "
                   "benchmarks and trying the tools). Files already in DIR (the released ones, say) are not "
                   "replaced without --force.");
    o.positional("DIR", &dir, "the folder to write (made if missing)");
    o.flag("hubert", &hubert, "also chinese-hubert-large/ (1.2 GB); without it use an mfcc_* variant");
    o.flag("face-sr", &face_sr,
           "also GFPGANv1.4.pth, detection_Resnet50_Final.pth and parsing_parsenet.pth (face-sr, crop=auto; 0.5 GB)");
    o.flag("force", &force, "replace the model files DIR already holds");
    if (!o.parse(argc, argv)) return 0;
    std::vector<std::string> names = stage_files();
    if (hubert) names.insert(names.end(), std::begin(kHubertFiles), std::end(kHubertFiles));
    if (face_sr) names.insert(names.end(), {kGfpgan, kRetinaface, kParsenet});
    prepare_folder("random", dir, names, force);
    for (Variant v : kVariants) bench::write_stage2(dir + "/" + stage2_file(v), v);
    bench::write_stage1(dir + "/stage1.ckpt");
    if (hubert) bench::write_hubert_large(dir + "/chinese-hubert-large", 24);
    if (face_sr) {
      bench::write_gfpgan(dir + "/" + kGfpgan);
      bench::write_retinaface(dir + "/" + kRetinaface, 256);
      bench::write_parsenet(dir + "/" + kParsenet);
    }
    std::fprintf(stderr, "anitalker fixtures random: wrote %s\n", dir.c_str());
    return 0;
  });
}
