// anitalker check: runs every network at full size, with random weights in
// the released layouts, on the CPU and on another device (a GPU), on the same
// inputs, and compares the outputs.  The CPU path is the one the fixture
// tests hold to the original code; this check carries that parity over to a
// device the test suite cannot reach (CI has no GPU).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "bench_models.h"
#include "bench_util.h"
#include "checkpoint.h"
#include "cli.h"
#include "cuda_graph.h"
#include "device.h"
#include "face_restore.h"
#include "gfpgan.h"
#include "hubert.h"
#include "lia.h"
#include "motion.h"
#include "motion_driver.h"
#include "parsenet.h"
#include "retinaface.h"
#include "state_dict.h"

namespace {

struct Row {
  std::string what;
  double ref = 0, diff = 0, rel = 0, mean = 0;
  bool ok = true;
};

}  // namespace

int cmd_check(int argc, char** argv) {
  return cli::run("check", [&] {
    std::string device = "cuda", only = "hubert,motion,render,sr";
    double tolerance = 1e-3, perturb = 0;
    int frames = 100, steps = 10, threads = 0;
    cli::Options o("check",
                   "Writes each network of the chain at its released size with random weights (HuBERT-large, the "
                   "five stage-2 variants, the stage-1 encoder and renderer, GFPGAN v1.4, ParseNet, "
                   "RetinaFace-ResNet50), loads it on the CPU and on --device, runs both on the same inputs and "
                   "compares: relative = max |device - cpu| / max |cpu|, per output.  Passes when every relative "
                   "difference is at most --tolerance and the renderer's 8-bit frames are at most one level apart.  "
                   "Exit status 0 when all pass, 1 when any differs more.");
    o.device(&device, "compared with cpu");
    o.text("only", &only, "LIST", "comma-separated subset of: hubert,motion,render,sr");
    o.number("tolerance", &tolerance, 1e-12, 1, "X",
             "largest relative difference that passes (float32 summed in another order, with TF32 off; TF32 alone "
             "would give ~1e-3)");
    o.integer("frames", &frames, 8, 2000, "N", "motion frames (100 = 4 s)");
    o.integer("steps", &steps, 2, 1000, "N", "DDIM steps");
    o.number("perturb", &perturb, 0, 1, "X",
             "a self-test of the comparison: add X x each output's range (8-bit frames: ceil(X x 255) levels) to "
             "the device's outputs; above --tolerance every row must then fail");
    o.threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    auto wants = [&](const char* name) { return ("," + only + ",").find("," + std::string(name) + ",") != std::string::npos; };
    {
      std::string rest = "," + only + ",";
      for (const char* known : {"hubert", "motion", "render", "sr"}) {
        const std::string k = "," + std::string(known) + ",";
        for (size_t p; (p = rest.find(k)) != std::string::npos;) rest.replace(p, k.size() - 1, "");
      }
      // An empty list given ('--only ""', '--only ,': an unset variable in
      // a script) compared nothing and passed (found 2026-12-07).
      if (rest.find_first_not_of(',') != std::string::npos ||
          (o.given("only") && only.find_first_not_of(',') == std::string::npos))
        throw cli::UsageError("--only: expected a list of hubert, motion, render, sr; got '" + only + "'");
    }
    anitalker::motion::ddim_timesteps(steps);  // a clear error for a step count the sampler cannot do
    cli::set_threads(threads);
    const c10::Device cpu(c10::kCPU), dev = anitalker::parse_device(device);
    c10::InferenceMode guard;
    std::printf("# anitalker check: %s; %s against cpu, tolerance %.1e of each output's range\n", anitalker::torch_info().c_str(),
                device.c_str(), tolerance);
    std::printf("%-40s %12s %12s %10s %12s  %s\n", "output", "max |cpu|", "max |diff|", "relative", "mean |diff|", "");
    std::vector<Row> rows;
    // Rows pass when relative <= tolerance; an `info` row is printed only.
    auto compare = [&](const std::string& what, const at::Tensor& on_cpu, const at::Tensor& on_dev, bool info = false) {
      const at::Tensor x = on_cpu.to(cpu, at::kDouble);
      at::Tensor y = on_dev.to(cpu, at::kDouble);
      if (x.sizes() != y.sizes()) throw std::runtime_error(what + ": shapes differ between the devices");
      Row r;
      r.what = what;
      r.ref = x.abs().max().item<double>();
      if (perturb > 0) y = y + perturb * r.ref;
      const at::Tensor d = (x - y).abs();
      r.diff = d.max().item<double>();
      r.mean = d.mean().item<double>();
      r.rel = r.diff / std::max(r.ref, 1e-12);
      r.ok = std::isfinite(r.ref) && std::isfinite(r.diff) && (info || r.rel <= tolerance);
      std::printf("%-40s %12.4g %12.4g %10.2e %12.3g  %s\n", what.c_str(), r.ref, r.diff, r.rel, r.mean,
                  info ? "(info)" : r.ok ? "ok" : "DIFFERS");
      std::fflush(stdout);
      rows.push_back(r);
    };
    // 8-bit frames: at most one level apart (a value on a rounding boundary).
    auto compare_levels = [&](const std::string& what, const at::Tensor& on_cpu, const at::Tensor& on_dev) {
      const at::Tensor d =
          (on_cpu.to(at::kInt) - on_dev.to(cpu, at::kInt) - static_cast<int>(std::ceil(perturb * 255))).abs();
      Row r;
      r.what = what;
      r.ref = 255;
      r.diff = d.max().item<double>();
      r.mean = d.to(at::kDouble).mean().item<double>();
      r.rel = r.diff / 255;
      r.ok = r.diff <= 1;
      const double off = d.gt(0).to(at::kDouble).mean().item<double>();
      std::printf("%-40s %12s %12.0f %10s %12.3g  %s (%.3f%% of values differ)\n", what.c_str(), "levels", r.diff, "", r.mean,
                  r.ok ? "ok" : "DIFFERS", 100 * off);
      std::fflush(stdout);
      rows.push_back(r);
    };
    at::manual_seed(0);

    if (wants("hubert")) {
      const std::string dir = bench::temp_path("check-hubert");
      bench::write_hubert_large(dir, 24);
      auto mc = anitalker::hubert::Model::load(dir, cpu);
      auto md = anitalker::hubert::Model::load(dir, dev);
      bench::remove_tree(dir);  // the mapping keeps the data
      const at::Tensor wave = at::randn({32000}).mul(0.1);
      compare("hubert-large 25 states, 2 s", mc->hidden_states(wave), md->hidden_states(wave));
    }

    if (wants("motion")) {
      using anitalker::motion::Variant;
      for (Variant v : {Variant::HubertAudioOnly, Variant::HubertPoseOnly, Variant::HubertFullControl, Variant::MfccPoseOnly,
                        Variant::MfccFullControl}) {
        const std::string path = bench::temp_path("check-stage2") + ".ckpt";
        bench::write_stage2(path, v);
        auto mc = anitalker::motion::Model::load(path, cpu);
        auto md = anitalker::motion::Model::load(path, dev);
        std::remove(path.c_str());
        const anitalker::motion::Model& m = *mc;
        const int64_t T = frames, n = (m.hubert() ? 2 : 4) * T;
        const at::Tensor feats = m.hubert() ? at::randn({n, m.hubert_layers(), m.audio_dim()}) : at::randn({n, m.audio_dim()});
        const at::Tensor audio = anitalker::motion::audio_input(m, feats);
        const at::Tensor start = at::randn({1, m.start_dim()}), direction = at::randn({1, m.motion_dim()});
        const at::Tensor noise = m.seed_noise(0, T);
        compare(anitalker::motion::variant_name(v) + " seed noise", noise, md->seed_noise(0, T));
        const std::string name = anitalker::motion::variant_name(v);
        for (bool control : {false, true}) {
          if (control && !m.has_pose()) continue;
          anitalker::motion::Controls ctl;
          ctl.control = control;
          ctl.yaw = 0.2;
          ctl.pitch = -0.1;
          at::Tensor pose, location, scale;
          anitalker::motion::control_tensors(ctl, 0, T, &pose, &location, &scale);
          const auto cc = mc->condition(start, direction, audio, control, pose, location, scale);
          const auto cd = md->condition(start, direction, audio, control, pose, location, scale);
          const std::string tag = name + (control ? " control" : "");
          if (!control) {
            compare(tag + " speech", cc.speech, cd.speech);
            if (m.has_pose()) compare(tag + " pose", cc.pose, cd.pose);
          }
          compare(tag + " eps t=500", mc->denoise(cc, noise, 500), md->denoise(cd, noise.to(dev), 500));
          compare(tag + " sample " + std::to_string(steps) + " steps", mc->sample(cc, noise, steps), md->sample(cd, noise.to(dev), steps));
        }
      }
    }

    if (wants("render")) {
      const std::string path = bench::temp_path("check-stage1") + ".ckpt";
      bench::write_stage1(path);
      auto mc = anitalker::lia::Model::load(path, cpu);
      auto md = anitalker::lia::Model::load(path, dev);
      // The GPU's options (docs/elements.md): channels-last, made here (on
      // the CPU with ANITALKER_GENERIC=1 too, a dry run).
      std::shared_ptr<const anitalker::lia::Model> md_cl;
      if (anitalker::generic_path(dev))
        md_cl = std::make_shared<const anitalker::lia::Model>(anitalker::StateDict(anitalker::Checkpoint::open(path)),
                                                              dev, at::kFloat, anitalker::Precision::Fp32, true);
      std::remove(path.c_str());
      const at::Tensor image = at::rand({1, 3, mc->size(), mc->size()}) * 2 - 1;
      const anitalker::lia::Portrait pc = mc->encode(image), pd = md->encode(image.to(dev));
      compare("stage1 start code", pc.start, pd.start);
      compare("stage1 direction code", pc.direction, pd.direction);
      const at::Tensor motion = at::randn({8, mc->motion_dim()}) * 0.5;
      // The flow warps (grid_sample) turn the last bits of the flow into
      // differences of up to ~1e-2 at sharp edges of the random images: the
      // raw frames are shown, the 8-bit frames the element emits are held.
      const at::Tensor rc = mc->render(pc, motion), rd = md->render(pd, motion.to(dev));
      compare("stage1 8 frames, raw", rc, rd, true);
      compare_levels("stage1 8 frames, 8-bit", anitalker::lia::to_uint8(rc), anitalker::lia::to_uint8(rd));
      if (md_cl) {
        const at::Tensor rl = md_cl->render(md_cl->encode(image.to(dev)), motion.to(dev));
        compare("stage1 channels-last, raw", rc, rl, true);
        compare_levels("stage1 channels-last, 8-bit", anitalker::lia::to_uint8(rc), anitalker::lia::to_uint8(rl));
      }
      if (dev.is_cuda() && anitalker::cuda_graphs_built()) {
        // Recorded, then replayed twice: the second replay with the same
        // inputs, the first after its recording.
        md->set_graphs(anitalker::lia::Model::Graphs::On);
        md->render(pd, motion.to(dev));
        const at::Tensor rg = md->render(pd, motion.to(dev));
        std::printf("stage1 CUDA graphs: %s; max |diff| from the frames without: %.3g\n", md->graphs_status().c_str(),
                    (rg - rd).abs().max().item<double>());
        compare("stage1 CUDA graph, raw", rc, rg, true);
        compare_levels("stage1 CUDA graph, 8-bit", anitalker::lia::to_uint8(rc), anitalker::lia::to_uint8(rg));
        md->set_graphs(anitalker::lia::Model::Graphs::Off);
      }
    }

    if (wants("sr")) {
      const std::string stem = bench::temp_path("check-sr");
      bench::write_gfpgan(stem + "-gfpgan.pth");
      bench::write_parsenet(stem + "-parsenet.pth");
      bench::write_retinaface(stem + "-retinaface.pth", 512);
      const at::Tensor face = at::rand({1, 3, 512, 512}) * 2 - 1;
      {
        auto mc = anitalker::gfpgan::Model::load(stem + "-gfpgan.pth", cpu);
        auto md = anitalker::gfpgan::Model::load(stem + "-gfpgan.pth", dev);
        compare("gfpgan 512 (stored noise)", mc->forward(face), md->forward(face.to(dev)));
        // A batch (on a GPU one convolution a layer, the style on the
        // input), and channels-last.
        const at::Tensor two = at::cat({face, face.flip(3)}, 0);
        compare("gfpgan 512, a batch of 2", mc->forward(two), md->forward(two.to(dev)));
        if (anitalker::generic_path(dev)) {
          const anitalker::gfpgan::Model cl(anitalker::StateDict(anitalker::Checkpoint::open(stem + "-gfpgan.pth")), dev,
                                            at::kFloat, anitalker::Precision::Fp32, true);
          compare("gfpgan 512, a batch of 2, channels-last", mc->forward(two), cl.forward(two.to(dev)));
        }
      }
      {
        auto mc = anitalker::parsenet::Model::load(stem + "-parsenet.pth", cpu);
        auto md = anitalker::parsenet::Model::load(stem + "-parsenet.pth", dev);
        compare("parsenet 512 logits", mc->forward(face), md->forward(face.to(dev)));
      }
      {
        auto mc = anitalker::retinaface::Model::load(stem + "-retinaface.pth", cpu);
        auto md = anitalker::retinaface::Model::load(stem + "-retinaface.pth", dev);
        for (int64_t size : {256, 512}) {
          const at::Tensor x = at::randn({1, 3, size, size}) * 50;  // BGR minus the mean, as detect() feeds it
          const anitalker::retinaface::Heads hc = mc->forward(x), hd = md->forward(x.to(dev));
          const std::string s = "retinaface " + std::to_string(size) + " ";
          compare(s + "boxes", hc.loc, hd.loc);
          compare(s + "scores", hc.conf, hd.conf);
          compare(s + "landmarks", hc.landms, hd.landms);
        }
      }
      {
        // The paste on the device (what FaceRestorer does where ParseNet
        // runs on a GPU) against OpenCV's on the CPU: the steps bit for bit,
        // the whole frame within a level (GFPGAN's last bits differ).
        namespace face = anitalker::face;
        cv::Mat frame(256, 256, CV_8UC3), mask(512, 512, CV_64F);
        cv::RNG rng(1);
        rng.fill(frame, cv::RNG::UNIFORM, 0, 256);
        cv::GaussianBlur(frame, frame, cv::Size(9, 9), 3);
        rng.fill(mask, cv::RNG::UNIFORM, 0.0, 1.0);
        const face::Landmarks lm = {cv::Point2f(96, 110), cv::Point2f(160, 110), cv::Point2f(128, 145),
                                    cv::Point2f(102, 180), cv::Point2f(154, 180)};
        const cv::Mat affine = face::align_matrix(lm), inverse = face::paste_matrix(affine, 2);
        const at::Tensor on_dev = face::image_tensor(frame).to(dev);
        compare_levels("paste: aligned crop (warp), uint8", face::image_tensor(face::warp_face(frame, affine)),
                       face::warp_affine(on_dev, affine, cv::Size(512, 512), cv::Scalar(135, 133, 132)));
        compare_levels("paste: background (Lanczos), uint8", face::image_tensor(face::upscale_background(frame, 2)),
                       face::resize_lanczos4(on_dev, cv::Size(512, 512)));
        compare("paste: mask warped back, float64", face::image_tensor(face::warp_mask(mask, inverse, cv::Size(512, 512))),
                face::warp_affine(face::image_tensor(mask).to(dev), inverse, cv::Size(512, 512)));
        const face::FaceRestorer rc(anitalker::gfpgan::Model::load(stem + "-gfpgan.pth", cpu), nullptr,
                                    anitalker::parsenet::Model::load(stem + "-parsenet.pth", cpu));
        const face::FaceRestorer rd(anitalker::gfpgan::Model::load(stem + "-gfpgan.pth", dev), nullptr,
                                    anitalker::parsenet::Model::load(stem + "-parsenet.pth", dev));
        compare_levels("face sr frame 256 -> 512, 8-bit", face::image_tensor(rc.enhance(frame, {lm})),
                       face::image_tensor(rd.enhance(frame, {lm})));
      }
      for (const char* f : {"-gfpgan.pth", "-parsenet.pth", "-retinaface.pth"}) std::remove((stem + f).c_str());
    }

    int bad = 0;
    for (const Row& r : rows) bad += r.ok ? 0 : 1;
    std::printf("%zu outputs compared, %d differ by more than %.1e\n", rows.size(), bad, tolerance);
    return bad == 0 ? 0 : 1;
  });
}
