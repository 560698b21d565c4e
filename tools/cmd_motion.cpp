// anitalker motion: stage 2 without GStreamer: audio features and the
// portrait's codes in, motion latents out, driven as the reference demo
// drives the motion generator (spec/motion.md sections 4, 5 and 7).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cstdint>
#include <cstdio>
#include <sys/stat.h>

#include "bench_util.h"
#include "cli.h"
#include "output_file.h"
#include "device.h"
#include "error.h"
#include "motion.h"
#include "motion_driver.h"
#include "offline_limit.h"
#include "state_dict.h"

namespace {

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// A float tensor from `path`, as float32.
at::Tensor read_float(const std::string& path) {
  at::Tensor t = anitalker::read_npy_tensor(path);
  if (!at::isFloatingType(t.scalar_type()))
    throw anitalker::format_error(path + ": expected float values, got " + std::string(c10::toString(t.scalar_type())));
  t = t.to(at::kFloat).contiguous();
  anitalker::require_finite(t.data_ptr<float>(), t.sizes().vec(), path);
  return t;
}

// A code of `n` values as [1, n], accepting [n] and [1, n].
at::Tensor read_code(const std::string& path, int64_t n, const char* what) {
  at::Tensor t = read_float(path);
  if (!((t.dim() == 2 && t.size(0) == 1 && t.size(1) == n) || (t.dim() == 1 && t.size(0) == n)))
    throw anitalker::format_error(path + ": expected the " + what + " of shape [1, " + std::to_string(n) + "], got " + shape_str(t));
  return t.reshape({1, n});
}

// The model's audio input from the layouts the tools and the demo write.  A
// mismatch is a problem of the file, so the error names it (exit 1).
at::Tensor read_features(const std::string& path, const anitalker::motion::Model& m) {
  const at::Tensor given = read_float(path);
  at::Tensor f = given;
  const std::string L = std::to_string(m.hubert_layers()), H = std::to_string(m.audio_dim());
  const std::string want = m.hubert() ? "[" + L + ", N, " + H + "] or [1, " + L + ", 2T, " + H + "] (HuBERT features, for " +
                                            anitalker::motion::variant_name(m.variant()) + ")"
                                      : "[N, " + H + "] or [1, 4T, " + H + "] (MFCC features, for " +
                                            anitalker::motion::variant_name(m.variant()) + ")";
  try {
    if (m.hubert()) {
      if (f.dim() == 4 && f.size(0) == 1) f = f[0];
      // [L, N, H] as `anitalker features` and the demo write it; hubertenc's
      // frame-major [N, L, H] too, where it cannot be mistaken for it.
      if (f.dim() == 3 && f.size(0) != m.hubert_layers() && f.size(1) == m.hubert_layers())
        return anitalker::motion::audio_input(m, f, /*layer_major=*/false);
      return anitalker::motion::audio_input(m, f, /*layer_major=*/true);
    }
    if (f.dim() == 3 && f.size(0) == 1) f = f[0];
    return anitalker::motion::audio_input(m, f);
  } catch (const anitalker::Error& e) {
    const std::string why = e.what();
    if (why.find("too short") != std::string::npos) throw anitalker::format_error(path + ": " + why.substr(why.find(' ') + 1));
    throw anitalker::format_error(path + ": expected features of shape " + want + ", got " + shape_str(given));
  }
}

}  // namespace

int cmd_motion(int argc, char** argv) {
  return cli::run("motion", [&] {
    std::string stage2, features, start_path, direction_path, noise_path, out, pred_dir, pose_file, device = "cpu";
    std::string precision = "fp32";
    long long seed = -1, steps = 50, threads = 0;
    unsigned offline_limit = anitalker::kOfflineLimitDefaultS;
    anitalker::motion::Controls ctl;
    cli::Options o("motion",
                   "Generates the motion latents of an utterance with a stage-2 checkpoint (any of the five released "
                   "variants), as the reference demo does.  Give exactly one of --noise and --seed.");
    o.text("stage2|checkpoint", &stage2, "CKPT", "a stage-2 checkpoint, e.g. models/stage2_audio_only_hubert.ckpt")
        .required();
    o.text("features", &features, "F.npy",
           "HuBERT variants: float32 [layers, N, H] as `anitalker features --hubert` writes it (or the demo's "
           "[1, layers, 2T, H]); N/2 motion frames.  MFCC variants: [N, 39] as `anitalker features --mfcc` writes "
           "it (or [1, 4T, 39]); N/4 motion frames.  Frames past the last whole motion frame are dropped, as the "
           "demo drops them")
        .required();
    o.text("start", &start_path, "S.npy",
           "the portrait's start code, [1, 512] (`anitalker render --codes-dir` writes it as h_source.npy)")
        .required();
    o.text("direction", &direction_path, "D.npy", "its direction code, [1, 20] (h_motion.npy)").required();
    o.text("noise", &noise_path, "N.npy", "the initial noise, [1, T, 20]");
    o.integer("seed", &seed, 0, INT64_MAX, "K", "the noise the demo draws with --seed K (bit-exact)").shows("");
    o.integer("steps", &steps, 2, 1000, "N", "DDIM steps; N must be ceil(1000 / k) for an integer k");
    o.text("out", &out, "M.npy", "float32 [1, T, 20] motion latents").required();
    o.flag("control", &ctl.control,
           "feed the pose (and for full_control, location and scale) below to the model instead of its "
           "predictions (the demo's --control_flag)");
    o.custom("pose", "Y P R", 3,
             [&](const std::string& opt, const std::vector<std::string>& v) {
               float* f[3] = {&ctl.yaw, &ctl.pitch, &ctl.roll};
               for (int i = 0; i < 3; ++i) *f[i] = static_cast<float>(cli::parse_number(opt, v[i], -1, 1));
             },
             "constant yaw, pitch, roll in the model's units, 1 = 90 degrees, as the demo's "
             "--pose_yaw/--pose_pitch/--pose_roll",
             "0.25 0 0");
    o.number("pose-yaw", &ctl.yaw, -1, 1, "Y", "the yaw alone");
    o.number("pose-pitch", &ctl.pitch, -1, 1, "P", "the pitch alone");
    o.number("pose-roll", &ctl.roll, -1, 1, "R", "the roll alone");
    o.text("pose-file", &pose_file, "P.npy",
           "per-frame [N, 3] yaw, pitch, roll in degrees (the demo's --pose_driven_path): divided by 90, padded "
           "with its last row");
    o.number("face-location|location", &ctl.location, -10, 10, "L", "face location (full-control variants)");
    o.number("face-scale|scale", &ctl.scale, -10, 10, "S", "face scale (full-control variants)");
    o.text("predicted-dir", &pred_dir, "DIR",
           "also write the pose [1, T, 3] (pred_pose.npy) and, for full_control, location and scale [1, T, 1] "
           "(pred_location.npy, pred_scale.npy): the predictors' output, or the given signals with --control.  "
           "The audio_only variant has no predictors: nothing is written for it");
    o.integer("offline-limit", &offline_limit, 0, anitalker::kOfflineLimitMaxS, "S",
              "the longest clip generated in one piece, as anitalkermotion's offline-limit (the denoiser's "
              "attention spans the whole clip: memory grows with the square of the length); 0 = no limit");
    o.precision(&precision,
                "the denoiser's arithmetic, as anitalkermotion's precision property: fp32 (exact), bf16 (a CPU with "
                "AVX512_BF16: its conformer blocks in bfloat16, about 1.5x, not exact)");
    o.device(&device).threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    const anitalker::Precision prec = anitalker::parse_precision(precision);
    const bool pose_given = o.given("pose") || o.given("pose-yaw") || o.given("pose-pitch") || o.given("pose-roll");
    const bool location_given = o.given("face-location") || o.given("face-scale");
    if (noise_path.empty() == (seed < 0)) throw cli::UsageError("give exactly one of --noise N.npy and --seed K");
    anitalker::check_output_path(out, {stage2, features, start_path, direction_path, noise_path, pose_file});
    anitalker::check_npy_output(out);
    if (!pred_dir.empty())
      anitalker::check_folder_outputs(pred_dir, {"pred_pose.npy", "pred_location.npy", "pred_scale.npy"},
                                      "--predicted-dir",
                                      {stage2, features, start_path, direction_path, noise_path, pose_file},
                                      {{"--out", out}});
    if (pose_given && !pose_file.empty()) throw cli::UsageError("give at most one of --pose and --pose-file");
    // Before any work: a step count the stride rule cannot meet (e.g. 49).
    try {
      anitalker::motion::ddim_timesteps(static_cast<int>(steps));
    } catch (const anitalker::Error& e) {
      const std::string why = e.what();  // "motion: cannot create exactly ..."
      throw cli::UsageError("--steps " + std::to_string(steps) + ": " + why.substr(why.find(' ') + 1));
    }
    cli::set_threads(static_cast<int>(threads));
    const c10::Device dev = anitalker::parse_device(device);
    // Refused before any work, naming the option, the device and what it supports.
    anitalker::check_precision(prec, dev, "--precision", {anitalker::Precision::Fp32, anitalker::Precision::Bf16},
                               "the motion generator");
    at::NoGradGuard no_grad;

    if (!ctl.control && (pose_given || !pose_file.empty() || location_given))
      std::fprintf(stderr, "anitalker motion: note: without --control the model predicts pose, location and scale; the given ones are ignored\n");
    const double t0 = bench::now_s();
    auto model = anitalker::motion::Model::load(stage2, dev, prec);
    const anitalker::motion::Model& m = *model;
    const at::Tensor audio = read_features(features, m);
    const int64_t T = audio.size(m.hubert() ? 2 : 1) / (m.hubert() ? 2 : 4);
    // A long clip in one piece: refused before the work (10 minutes took
    // 10 GB with the chain test model, speech width 24; full size far more).
    {
      char b[96];
      std::snprintf(b, sizeof b, "%lld motion frames (%.1f s)", static_cast<long long>(T), T / 25.0);
      cli::check_offline_limit(features + ": " + b, T / 25.0, offline_limit, "the denoiser",
                               "raise --offline-limit (0 = no limit), or let `anitalker generate --mode auto` go on in "
                               "windows");
    }
    const at::Tensor start = read_code(start_path, m.start_dim(), "start code");
    const at::Tensor direction = read_code(direction_path, m.motion_dim(), "direction code");
    if (!pose_file.empty()) {
      ctl.pose_file = anitalker::motion::read_pose_file(pose_file);
    }
    at::Tensor noise;
    if (!noise_path.empty()) {
      noise = read_float(noise_path);
      if (noise.dim() == 2) noise = noise.unsqueeze(0);
      if (noise.dim() != 3 || noise.size(0) != 1 || noise.size(1) != T || noise.size(2) != m.motion_dim())
        throw anitalker::format_error(noise_path + ": expected noise of shape [1, " + std::to_string(T) + ", " +
                                      std::to_string(m.motion_dim()) + "] (" + features + " makes " + std::to_string(T) +
                                      " motion frames), got " + shape_str(read_float(noise_path)));
    } else {
      noise = m.seed_noise(static_cast<uint64_t>(seed), T);
    }
    const double t_load = bench::now_s() - t0;

    const double t1 = bench::now_s();
    const anitalker::motion::Generated g = anitalker::motion::generate(m, start, direction, audio, ctl, noise, static_cast<int>(steps));
    at::Tensor motion = g.motion.cpu().contiguous();
    const double t_gen = bench::now_s() - t1;

    // The predictions first, the motion last: when --out exists, so do they.
    if (!pred_dir.empty()) {
      if (!m.has_pose()) {
        std::fprintf(stderr, "anitalker motion: note: %s has no pose, location or scale predictors; nothing written to %s\n",
                     anitalker::motion::variant_name(m.variant()).c_str(), pred_dir.c_str());
      } else {
        cli::make_folder(pred_dir);
        anitalker::write_npy_tensor(pred_dir + "/pred_pose.npy", g.pose);
        if (m.has_location()) {
          anitalker::write_npy_tensor(pred_dir + "/pred_location.npy", g.location);
          anitalker::write_npy_tensor(pred_dir + "/pred_scale.npy", g.scale);
        }
      }
    }
    anitalker::write_npy_tensor(out, motion);
    std::fprintf(stderr, "anitalker motion: %s, %lld frames (%.2f s), %lld steps, control %s, %s: %.2f s (+%.2f s loading) to %s\n",
                 anitalker::motion::variant_name(m.variant()).c_str(), static_cast<long long>(T), T / 25.0, steps,
                 ctl.control ? "on" : "off", precision.c_str(), t_gen, t_load, out.c_str());
    return 0;
  });
}
