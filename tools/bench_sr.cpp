// anitalker bench sr: the three networks of face restoration at full size
// with random weights, written in the released layouts (spec/face-sr.md
// appendices A-C) and loaded through the normal path: GFPGAN v1.4 at 512,
// ParseNet at 512, RetinaFace-ResNet50 on a 256 frame, and the whole filter
// (256 -> 512, one face).  Reports ms per call (median and range), the FLOPs
// counted from the layer shapes, the fraction of this machine's float32 roof
// (the larger of sgemm and a oneDNN convolution, measured in the run), and
// the peak memory.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "bench_models.h"
#include "bench_util.h"
#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "cli.h"
#include "device.h"
#include "face_restore.h"
#include "gfpgan.h"
#include "parsenet.h"
#include "retinaface.h"
#include "state_dict.h"

namespace face = anitalker::face;

namespace {


}  // namespace

int bench_sr(int argc, char** argv) {
  return cli::run("bench sr", [&] {
    int repeat = 3, threads = 0, parse_every = 5;
    bool prof = false, bf16 = false, fp16 = false;
    std::vector<int> batches = {1};
    std::string device = "cpu";
    cli::Options o("bench sr",
                   "Writes GFPGANv1.4, ParseNet and RetinaFace-ResNet50 checkpoints of the released layouts and sizes "
                   "with random weights, loads them as the real files load, then times (median of --repeat runs, "
                   "after one warm-up):\n"
                   "  roof        a 2048x2048 float32 matmul and a 3x3 convolution 512->512: this machine's float32 "
                   "roof, measured in the same run\n"
                   "  cpu         on the CPU: threads x the clock /proc/cpuinfo reports x float32 lanes x 2 (FMA), "
                   "the peak of one vector pipe a core, and the roof against it\n"
                   "  winograd    on the CPU: a Winograd 3x3 convolution 512->512 of one image, as the stages' 3x3 "
                   "convolutions run (GFLOP/s counted as the direct one's products, so a stage can pass 100% of the "
                   "roof; ANITALKER_WINOGRAD=0: direct)\n"
                   "  gfpgan      one 512x512 face\n"
                   "  parsenet    the labels of one 512x512 face\n"
                   "  retinaface  detection on a 256x256 frame, post-processing included\n"
                   "  filter      the whole frame 256 -> 512: detection, then one face (fixed landmarks, since "
                   "random weights find no real face) aligned, restored, parsed and pasted; 'rest' is what the "
                   "networks leave; with the process CPU time a frame takes (on a GPU, where the paste runs on the device, "
                   "what the host does around it)\n"
                   "and the peak resident memory.");
    o.integer("repeat", &repeat, 1, 100, "N", "runs of each");
    o.integer("parse-every", &parse_every, 1, 1000, "N",
              "also the filter as gfpgansr's parse-every=N runs it: N frames, ParseNet on the first (the mask "
              "pastes the rest), detection on each; 1: not timed");
    o.flag("profile", &prof, "list the ops of one GFPGAN and one ParseNet call by self time");
    o.flag("bf16", &bf16,
           "also GFPGAN at precision=bf16 (its convolutions in bfloat16, the rest float32; a CPU with "
           "AVX512_BF16): its time against float32 and the 8-bit distance of its face from float32's");
    o.flag("fp16", &fp16, "the same at precision=fp16 (a CUDA device: its convolutions in float16)");
    o.integers("batch", &batches, 1, 256, "LIST",
               "GFPGAN's faces per call (each size also at --bf16 / --fp16), and ParseNet's: ms a face and faces "
               "per second");
    o.device(&device).threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    if (bf16 && fp16) throw cli::UsageError("give --bf16 or --fp16, not both");
    const anitalker::Precision lowp = fp16 ? anitalker::Precision::Fp16 : anitalker::Precision::Bf16;
    const char* lname = anitalker::precision_name(lowp);
    cli::set_threads(threads);
    const c10::Device dev = anitalker::parse_device(device);
    c10::InferenceMode guard;
    auto sync = [&] {
      anitalker::synchronize(dev);
    };
    std::printf("# anitalker bench sr: %s, device %s\n", anitalker::torch_info().c_str(), device.c_str());
    const double roof = bench::roof_gflops(dev);

    const std::string stem = bench::temp_path("sr");
    const double f_gfpgan = bench::write_gfpgan(stem + "-gfpgan.pth");
    const double f_parse = bench::write_parsenet(stem + "-parsenet.pth");
    const double f_det = bench::write_retinaface(stem + "-retinaface.pth", 256);
    double t0 = bench::now_s();
    auto gfpgan = anitalker::gfpgan::Model::load(stem + "-gfpgan.pth", dev);
    auto parser = anitalker::parsenet::Model::load(stem + "-parsenet.pth", dev);
    auto detector = anitalker::retinaface::Model::load(stem + "-retinaface.pth", dev);
    std::shared_ptr<const anitalker::gfpgan::Model> gfpgan16;
    if (bf16 || fp16) gfpgan16 = anitalker::gfpgan::Model::load(stem + "-gfpgan.pth", dev, lowp);
    // ParseNet wholly in the reduced type: measured only (gfpgansr keeps
    // ParseNet in float32), for whether its labels would hold.
    std::shared_ptr<const anitalker::parsenet::Model> parser16;
    if (bf16 || fp16)
      parser16 = std::make_shared<const anitalker::parsenet::Model>(
          anitalker::StateDict(anitalker::Checkpoint::open(stem + "-parsenet.pth")), dev,
          fp16 ? at::kHalf : at::kBFloat16);
    std::printf("loaded in %.2f s\n", bench::now_s() - t0);
    for (const char* f : {"-gfpgan.pth", "-parsenet.pth", "-retinaface.pth"}) std::remove((stem + f).c_str());

    auto restorer_on_device = [](const anitalker::parsenet::Model& p) { return p.generic(); };
    // Median and range of `repeat` timed runs after a warm-up; the process
    // CPU time of each run goes to last_cpu.
    std::vector<double> last_cpu;
    auto time = [&](const std::function<void()>& fn) {
      fn();
      sync();
      std::vector<double> t;
      last_cpu.clear();
      for (int r = 0; r < repeat; ++r) {
        const double s0 = bench::now_s(), c0 = bench::cpu_s();
        fn();
        sync();
        t.push_back(bench::now_s() - s0);
        last_cpu.push_back(bench::cpu_s() - c0);
      }
      return bench::stats(t);
    };
    std::printf("%-11s %10s %22s %9s %9s %8s\n", "", "ms", "range (ms)", "GFLOP", "GFLOP/s", "of roof");
    auto report = [&](const char* name, const bench::Stats& s, double flops) {
      if (flops > 0) {
        const double gf = flops / s.median / 1e9;
        std::printf("%-11s %10.0f %10.0f .. %-9.0f %9.1f %9.1f %7.0f%%\n", name, 1e3 * s.median, 1e3 * s.min,
                    1e3 * s.max, flops / 1e9, gf, 100 * gf / roof);
      } else {
        std::printf("%-11s %10.0f %10.0f .. %-9.0f\n", name, 1e3 * s.median, 1e3 * s.min, 1e3 * s.max);
      }
    };

    at::manual_seed(0);
    const at::Tensor face = (at::rand({1, 3, 512, 512}) * 2 - 1).to(dev);
    const bench::Stats s_gfpgan = time([&] { gfpgan->forward(face); });
    report("gfpgan", s_gfpgan, f_gfpgan);
    if (gfpgan16) {
      const bench::Stats s16 = time([&] { gfpgan16->forward(face); });
      report((std::string("gfpgan ") + lname).c_str(), s16, f_gfpgan);
      // The face as GFPGANer writes it: clamp to [-1, 1], to 8 bits.
      auto u8 = [](const at::Tensor& raw) { return ((raw.clamp(-1, 1) + 1) * 127.5).round().to(at::kInt); };
      const at::Tensor d = (u8(gfpgan16->forward(face)) - u8(gfpgan->forward(face))).abs().to(at::kFloat).flatten().cpu();
      const double mse = d.pow(2).mean().item<double>();
      std::printf("%s        %.2fx float32's speed; the face against float32's: 8-bit max %d levels, p99.9 %.0f, "
                  "mean %.3f, PSNR %.1f dB\n",
                  lname, s_gfpgan.median / s16.median, d.max().item<int>(), at::quantile(d, 0.999).item<double>(),
                  d.mean().item<double>(), mse > 0 ? 10 * std::log10(255.0 * 255.0 / mse) : 999.0);
    }
    for (int b : batches) {
      if (b == 1) continue;  // the line above
      // b faces in one call (a GPU's way of restoring the faces of several
      // frames or streams): ms a face and faces per second.
      const at::Tensor faces = (at::rand({b, 3, 512, 512}) * 2 - 1).to(dev);
      for (const anitalker::gfpgan::Model* m : {gfpgan.get(), gfpgan16.get()}) {
        if (m == nullptr) continue;
        const bench::Stats s = time([&] { m->forward(faces); });
        std::printf("gfpgan %-4s batch %-4d %8.2f ms a face (%.2f .. %.2f), %.1f faces/s\n",
                    m == gfpgan.get() ? "fp32" : lname, b, 1e3 * s.median / b, 1e3 * s.min / b, 1e3 * s.max / b,
                    b / s.median);
      }
    }
    const bench::Stats s_parse = time([&] { parser->labels(face); });
    report("parsenet", s_parse, f_parse);
    if (parser16) {
      try {
        const bench::Stats s16 = time([&] { parser16->label_map(face); });
        const at::Tensor l16 = parser16->label_map(face), l32 = parser->label_map(face);
        const double same = l16.eq(l32).to(at::kDouble).mean().item<double>();
        // What the paste sees: the blurred face mask made of each.
        const at::Tensor dm = (face::parse_mask(l16[0]) - face::parse_mask(l32[0])).abs();
        std::printf("parsenet %s (measured only; gfpgansr keeps ParseNet in float32): %.0f ms, %.2fx float32's "
                    "speed; its labels %.2f%% float32's on the random face, the paste mask max %.3g, mean %.3g "
                    "from float32's\n",
                    lname, 1e3 * s16.median, s_parse.median / s16.median, 100 * same, dm.max().item<double>(),
                    dm.mean().item<double>());
      } catch (const c10::Error& e) {
        std::printf("parsenet %s: not run here (%s)\n", lname, e.what_without_backtrace());
      }
    }
    for (int b : batches) {
      if (b == 1) continue;
      // b faces in one call, as gfpgansr's max-batch runs ParseNet on a GPU.
      const at::Tensor faces = (at::rand({b, 3, 512, 512}) * 2 - 1).to(dev);
      const bench::Stats s = time([&] { parser->label_map(faces); });
      std::printf("parsenet fp32 batch %-4d %8.2f ms a face (%.2f .. %.2f), %.1f faces/s\n", b, 1e3 * s.median / b,
                  1e3 * s.min / b, 1e3 * s.max / b, b / s.median);
    }
    if (prof) {
      std::printf("gfpgan:\n");
      bench::profile([&] { gfpgan->forward(face); });
      std::printf("parsenet:\n");
      bench::profile([&] { parser->labels(face); });
    }

    // A 256 frame: smooth colours, so that resizes and warps see an image.
    cv::Mat frame(256, 256, CV_8UC3);
    for (int y = 0; y < 256; ++y)
      for (int x = 0; x < 256; ++x) frame.at<cv::Vec3b>(y, x) = cv::Vec3b(x, y, (x + y) / 2);
    int64_t found = 0;
    const bench::Stats s_det = time([&] { found = detector->detect(frame).size(0); });
    report("retinaface", s_det, f_det);

    // The whole filter: what gfpgansr does per frame, with the face given.
    const face::Landmarks lm = {cv::Point2f(96, 110), cv::Point2f(160, 110), cv::Point2f(128, 145),
                                cv::Point2f(102, 180), cv::Point2f(154, 180)};
    const face::FaceRestorer restorer(gfpgan, detector, parser);
    const bench::Stats s_all = time([&] {
      restorer.faces(frame);
      restorer.enhance(frame, {lm});
    });
    report("filter", s_all, f_gfpgan + f_parse + f_det);
    // The CPU a frame costs (all threads, user + system), where the frame's
    // maths runs: on the CPU the whole filter; on a GPU what the host does
    // around it (the detector's pre- and post-processing, alignment, one
    // copy in and one out, launching the kernels) plus the driver's wait
    // for the device at the copy out, which CUDA spends spinning.
    auto report_cpu = [&](const char* name) {
      const bench::Stats c = bench::stats(last_cpu);
      std::printf("%-11s %10.1f %10.1f .. %-9.1f ms of CPU a frame (process CPU time, %s)\n", name, 1e3 * c.median,
                  1e3 * c.min, 1e3 * c.max,
                  restorer_on_device(*parser) ? "the paste on the device" : "the paste with OpenCV");
    };
    report_cpu("filter cpu");
    if (parse_every > 1) {
      // N frames of one stream with a track, as gfpgansr with parse-every N:
      // the landmarks fixed (the track's, never detected again), the
      // detector run on each frame as above; ms a frame.
      face::FaceRestorer::Track track;
      const auto detect = face::FaceRestorer::FrameMode::Detect;
      const bench::Stats s = time([&] {
        track.faces = {lm};
        track.age = 0;
        track.size = frame.size();
        track.masks = {};
        for (int i = 0; i < parse_every; ++i) {
          restorer.faces(frame);
          restorer.frame(frame, detect, nullptr, &track, 1 << 30, parse_every);
        }
      });
      const bench::Stats per = {s.median / parse_every, s.min / parse_every, s.max / parse_every};
      std::printf("%-11s %10.0f %10.0f .. %-9.0f a frame over %d frames with parse-every %d: %.2fx the filter's frame "
                  "rate\n",
                  "filter pe", 1e3 * per.median, 1e3 * per.min, 1e3 * per.max, parse_every, parse_every,
                  s_all.median / per.median);
    }
    if (gfpgan16) {
      const face::FaceRestorer low(gfpgan16, detector, parser);
      const bench::Stats s_low = time([&] {
        low.faces(frame);
        low.enhance(frame, {lm});
      });
      report((std::string("filter ") + lname).c_str(), s_low, f_gfpgan + f_parse + f_det);
      report_cpu((std::string("filter ") + lname + " cpu").c_str());
    }
    // What the networks leave, timed on its own (the difference of the
    // medians above drowns in the networks' noise): alignment, the crop,
    // the tensor conversions, the background, the mask and the paste.
    const cv::Mat crop = face::warp_face(frame, face::align_matrix(lm));
    const at::Tensor raw = gfpgan->forward(face::gfpgan_input(crop));
    const cv::Mat restored = face::restored_to_bgr(raw);
    const cv::Mat labels = face::parse_labels(*parser, restored);
    const bench::Stats s_rest = time([&] {
      const cv::Mat affine = face::align_matrix(lm);
      face::gfpgan_input(face::warp_face(frame, affine));
      face::restored_to_bgr(raw);
      face::parsenet_input(restored);
      cv::Mat canvas;
      face::upscale_background(frame, 2).convertTo(canvas, CV_64FC3);
      face::paste_face(canvas, restored, face::paste_matrix(affine, 2), face::parse_mask(labels), 2);
      face::canvas_to_bgr(canvas);
    });
    report("rest", s_rest, 0);
    std::printf(
        "rest: alignment, warps, conversions, mask and paste-back, the CPU's way (OpenCV): %.1f%% of the filter's "
        "median (the "
        "detector found %lld faces on the random weights; one face was restored)\n",
        100 * s_rest.median / s_all.median, static_cast<long long>(found));
    std::printf("peak resident memory %.0f MB\n", cli::memory().peak / 1e6);
    std::printf(
        "constants, not measured in this run (the Python reference, torch 1.13, OpenBLAS, 2 threads, on a machine of "
        "the same class, docs/performance.md): gfpgan 4550 ms (396 GFLOP), parsenet 6240 ms (469 GFLOP), retinaface "
        "190 ms, about 11 s a frame\n");
    return 0;
  });
}
