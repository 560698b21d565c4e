// anitalker render: stage 1 without GStreamer: a portrait and motion codes in,
// frames out (spec/renderer.md).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <utility>
#include <vector>
#include <sys/stat.h>

#include "cli.h"
#include "npy.h"
#include "output_file.h"
#include "device.h"
#include "error.h"
#include "image.h"
#include "lia.h"
#include "state_dict.h"

namespace {

// The portrait's codes as one set: every file written under a temporary
// name first, then all renamed (a full disk left part of a set, over an
// older set of another portrait a mixed one, found 2026-12-07).
void write_codes(const std::string& dir, const std::vector<std::pair<std::string, at::Tensor>>& files) {
  cli::make_folder(dir);
  std::vector<std::pair<std::string, std::string>> bytes;
  for (const auto& [name, t] : files) {
    const std::string path = dir + "/" + name;
    bytes.emplace_back(path, anitalker::npy_tensor_bytes(t, path));
  }
  anitalker::write_files_atomic(bytes);
}

}  // namespace

int cmd_render(int argc, char** argv) {
  return cli::run("render", [&] {
    std::string stage1, portrait, motion_path, out, codes_dir, device = "cpu", precision = "fp32";
    bool raw = false;
    long long batch = 1, threads = 0;
    cli::Options o("render",
                   "Encodes the portrait with the stage-1 (LIA) encoder and renders one frame per motion code.  "
                   "With --codes-dir alone (no --motion, no --out) it writes only the portrait's codes, what "
                   "`anitalker motion` takes as --start and --direction.");
    o.text("stage1|checkpoint", &stage1, "CKPT", "stage1.ckpt (or a checkpoint in its layout)").required();
    o.text("portrait", &portrait, "IMAGE",
           "any image OpenCV decodes; resized to the network size as the reference does (Pillow bicubic)")
        .required();
    o.text("motion", &motion_path, "M.npy", "float32 (N, motion_dim) motion codes; (1, N, motion_dim) too");
    o.text("out", &out, "F.npy", "uint8 (N, H, W, 3) RGB frames; with --raw float32 (N, 3, H, W) before the clamp");
    o.flag("raw", &raw, "write the float32 frames before the clamp");
    o.text("codes-dir", &codes_dir, "DIR",
           "also write input.npy, h_source.npy (start code), h_motion.npy (direction code), direction_Q.npy and "
           "feat_K.npy there; without --motion and --out only h_source.npy and h_motion.npy");
    o.integer("batch-size", &batch, 1, 1024, "N", "frames rendered together");
    o.precision(&precision,
                "the decoder's arithmetic: fp32 (exact), bf16 (a CPU with AVX512_BF16: its modulated convolutions "
                "in bfloat16, about 1.3x, frames not exact), fp16 (a CUDA device: the same convolutions in float16)");
    o.device(&device).threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    const anitalker::Precision prec = anitalker::parse_precision(precision);
    // --codes-dir alone writes the portrait's codes (what `anitalker motion`
    // takes as --start and --direction) and renders nothing.
    const bool codes_only = motion_path.empty() && out.empty() && !codes_dir.empty();
    if (!codes_only) {
      if (motion_path.empty()) throw cli::UsageError("missing --motion (or give only --codes-dir to write the codes)");
      if (out.empty()) throw cli::UsageError("missing --out");
      anitalker::check_output_path(out, {stage1, portrait, motion_path});
      anitalker::check_npy_output(out);
    }
    // The codes' files (fixed names in --codes-dir): none may be an input
    // or --out, which a later write would replace.
    auto check_codes = [&](size_t feats) {
      std::vector<std::string> names = {"h_source.npy", "h_motion.npy"};
      if (!codes_only) names.insert(names.end(), {"input.npy", "direction_Q.npy"});
      for (size_t k = 0; k < feats; ++k) names.push_back("feat_" + std::to_string(k) + ".npy");
      anitalker::check_folder_outputs(codes_dir, names, "--codes-dir", {stage1, portrait, motion_path},
                                      {{"--out", out}});
    };
    if (!codes_dir.empty()) check_codes(0);
    cli::set_threads(static_cast<int>(threads));

    const c10::Device dev = anitalker::parse_device(device);
    // Refused before any work, naming the option, the device and what it supports.
    anitalker::check_precision(prec, dev, "--precision",
                               {anitalker::Precision::Fp32, anitalker::Precision::Bf16, anitalker::Precision::Fp16},
                               "the renderer");
    if (codes_only) {
      auto model = anitalker::lia::Model::load(stage1, dev, prec);
      const anitalker::lia::Portrait p = model->encode(anitalker::load_portrait(portrait, model->size()));
      write_codes(codes_dir, {{"h_source.npy", p.start}, {"h_motion.npy", p.direction}});
      std::fprintf(stderr, "anitalker render: the codes of %s to %s (h_source.npy, h_motion.npy)\n", portrait.c_str(),
                   codes_dir.c_str());
      return 0;
    }
    at::Tensor motion = anitalker::read_npy_tensor(motion_path);
    if (motion.dim() == 3 && motion.size(0) == 1) motion = motion[0];
    if (motion.scalar_type() != at::kFloat || motion.dim() != 2)
      throw anitalker::format_error(motion_path + ": expected float32 motion codes of shape (N, motion_dim), got " +
                                    c10::str(motion.scalar_type()) + " " + c10::str(motion.sizes()));
    motion = motion.contiguous();
    anitalker::require_finite(motion.data_ptr<float>(), motion.sizes().vec(), motion_path);
    auto model = anitalker::lia::Model::load(stage1, dev, prec);
    if (motion.size(1) != model->motion_dim())
      throw anitalker::format_error(motion_path + ": motion codes have " + std::to_string(motion.size(1)) + " dims, " + stage1 +
                                    " expects " + std::to_string(model->motion_dim()));
    const at::Tensor image = anitalker::load_portrait(portrait, model->size());
    const anitalker::lia::Portrait p = model->encode(image);
    if (!codes_dir.empty()) {
      check_codes(p.feats.size());
      std::vector<std::pair<std::string, at::Tensor>> files{{"input.npy", p.image},
                                                            {"h_source.npy", p.start},
                                                            {"h_motion.npy", p.direction},
                                                            {"direction_Q.npy", model->direction_basis()}};
      for (size_t k = 0; k < p.feats.size(); ++k) files.emplace_back("feat_" + std::to_string(k) + ".npy", p.feats[k]);
      write_codes(codes_dir, files);
    }
    // Each batch's frames go to the file as they are made: a long clip's
    // frames never all in memory (before 2026-12-07 they were, three times
    // over: 10 minutes with --raw, 11.8 GB of frames, needed about 35 GB).
    const int64_t N = motion.size(0), S = model->size();
    anitalker::NpyWriter w(out, raw ? anitalker::DType::Float32 : anitalker::DType::UInt8,
                           raw ? std::vector<int64_t>{N, 3, S, S} : std::vector<int64_t>{N, S, S, 3});
    for (int64_t i = 0; i < N; i += batch) {
      at::Tensor r = model->render(p, motion.slice(0, i, std::min<int64_t>(i + batch, N)));
      const at::Tensor f = (raw ? r.to(at::kCPU, at::kFloat) : anitalker::lia::to_uint8(r).cpu()).contiguous();
      w.append(f.data_ptr(), f.nbytes());
    }
    w.commit();
    std::fprintf(stderr, "anitalker render: %lld frames of %lldx%lld to %s\n", static_cast<long long>(N),
                 static_cast<long long>(S), static_cast<long long>(S), out.c_str());
    return 0;
  });
}
