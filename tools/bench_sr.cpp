// anitalker bench sr: the three networks of face restoration at full size
// with random weights, written in the released layouts (spec/face-sr.md
// appendices A-C) and loaded through the normal path: GFPGAN v1.4 at 512,
// ParseNet at 512, RetinaFace-ResNet50 on a 256 frame, and the whole filter
// (256 -> 512, one face).  Reports ms per call (median and range), the FLOPs
// counted from the layer shapes, the fraction of this machine's float32 GEMM
// throughput, and the peak memory.
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
#include "checkpoint_writer.h"
#include "cli.h"
#include "device.h"
#include "face_restore.h"
#include "gfpgan.h"
#include "parsenet.h"
#include "retinaface.h"

namespace face = anitalker::face;

namespace {

const char* kUsage =
    "usage: anitalker bench sr [--repeat N] [--threads N] [--device D]\n"
    "\n"
    "Writes GFPGANv1.4, ParseNet and RetinaFace-ResNet50 checkpoints of the released\n"
    "layouts and sizes with random weights, loads them as the real files load, then\n"
    "times (median of --repeat runs, default 3, after one warm-up):\n"
    "  gemm        a 2048x2048 float32 matmul: this machine's reference throughput\n"
    "  gfpgan      one 512x512 face\n"
    "  parsenet    the labels of one 512x512 face\n"
    "  retinaface  detection on a 256x256 frame, post-processing included\n"
    "  filter      the whole frame 256 -> 512: detection, then one face (fixed\n"
    "              landmarks, since random weights find no real face) aligned,\n"
    "              restored, parsed and pasted; 'rest' is what the networks leave\n"
    "and the peak resident memory.\n";

// A checkpoint being written, with the multiply-adds x 2 of the layers that
// inference runs, counted from their shapes and output sizes.
struct Net {
  bench::RandomCheckpoint w;
  double flops = 0;

  // A conv weight [cout, cin, k, k] (~ N(0, 1/fan_in)) with an optional zero
  // bias, producing res x res outputs; `run` = false for unused layers.
  void conv(const std::string& weight, int64_t cout, int64_t cin, int64_t k, int64_t res, const std::string& bias,
            bool run = true) {
    w.add(weight, {cout, cin, k, k}, "randn", 1.f / std::sqrt(static_cast<float>(cin * k * k)));
    if (!bias.empty()) w.add(bias, {cout}, "zero");
    if (run) flops += 2.0 * cout * cin * k * k * res * res;
  }
  // BatchNorm2d at its defaults (identity), with the batch counter.
  void bn(const std::string& p, int64_t c) {
    w.add(p + ".weight", {c}, "one");
    w.add(p + ".bias", {c}, "zero");
    w.add(p + ".running_mean", {c}, "zero");
    w.add(p + ".running_var", {c}, "one");
    w.add_int64(p + ".num_batches_tracked", 0);
  }
  void linear(const std::string& p, int64_t out, int64_t in, bool run = true) {
    w.add(p + ".weight", {out, in}, "uniform", 1.f / std::sqrt(static_cast<float>(in)));
    w.add(p + ".bias", {out}, "zero");
    if (run) flops += 2.0 * out * in;
  }
};

// GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2,
// narrow=1, sft_half=True) in the {'params_ema': ...} layout (spec 2, App. A).
double write_gfpgan(const std::string& path) {
  Net n;
  auto unet = [](int64_t r) -> int64_t { return r <= 64 ? 256 : r == 128 ? 128 : r == 256 ? 64 : 32; };
  auto dec = [](int64_t r) -> int64_t { return r <= 64 ? 512 : r == 128 ? 256 : r == 256 ? 128 : 64; };
  n.conv("conv_body_first.weight", 32, 3, 1, 512, "conv_body_first.bias");
  for (int i = 0; i < 7; ++i) {  // 512 -> 4
    const int64_t r = 512 >> i, cin = unet(r), cout = unet(r / 2);
    const std::string p = "conv_body_down." + std::to_string(i) + ".";
    n.conv(p + "conv1.weight", cin, cin, 3, r, p + "conv1.bias");
    n.conv(p + "conv2.weight", cout, cin, 3, r / 2, p + "conv2.bias");
    n.conv(p + "skip.weight", cout, cin, 1, r / 2, "");
  }
  n.conv("final_conv.weight", 256, 256, 3, 4, "final_conv.bias");
  for (int i = 0; i < 7; ++i) {  // 4 -> 512
    const int64_t r = 4 << i, cin = unet(r), cout = unet(2 * r);
    const std::string p = "conv_body_up." + std::to_string(i) + ".";
    n.conv(p + "conv1.weight", cin, cin, 3, r, p + "conv1.bias");
    n.conv(p + "conv2.weight", cout, cin, 3, 2 * r, p + "conv2.bias");
    n.conv(p + "skip.weight", cout, cin, 1, 2 * r, "");
    const std::string t = "toRGB." + std::to_string(i);
    n.conv(t + ".weight", 3, unet(8 << i), 1, 8 << i, t + ".bias", false);  // unused at inference
  }
  n.linear("final_linear", 16 * 512, 256 * 16);
  const std::string d = "stylegan_decoder.";
  for (int i = 1; i <= 15; i += 2) n.linear(d + "style_mlp." + std::to_string(i), 512, 512, false);  // unused
  n.w.add(d + "constant_input.weight", {1, 512, 4, 4}, "randn");
  // StyleConv: `weight` is the noise strength, `bias` (1,C,1,1); the
  // modulated kernel has a leading 1; modulation Linear(512 -> cin), bias 1.
  auto modulated = [&](const std::string& p, int64_t cout, int64_t cin, int64_t k, int64_t r) {
    n.w.add(p + ".modulated_conv.weight", {1, cout, cin, k, k}, "randn",
            1.f / std::sqrt(static_cast<float>(cin * k * k)));
    n.w.add(p + ".modulated_conv.modulation.weight", {cin, 512}, "randn", 1.f / std::sqrt(512.f));
    n.w.add(p + ".modulated_conv.modulation.bias", {cin}, "one");
    n.flops += 2.0 * cout * cin * k * k * r * r;
  };
  auto style_conv = [&](const std::string& p, int64_t cout, int64_t cin, int64_t r) {
    n.w.add(p + ".weight", {1}, "zero");
    n.w.add(p + ".bias", {1, cout, 1, 1}, "zero");
    modulated(p, cout, cin, 3, r);
  };
  auto to_rgb = [&](const std::string& p, int64_t cin, int64_t r) {
    n.w.add(p + ".bias", {1, 3, 1, 1}, "zero");
    modulated(p, 3, cin, 1, r);
  };
  style_conv(d + "style_conv1", 512, 512, 4);
  to_rgb(d + "to_rgb1", 512, 4);
  for (int i = 0; i < 7; ++i) {  // 8 -> 512
    const int64_t r = 8 << i, cin = dec(r / 2), cout = dec(r);
    style_conv(d + "style_convs." + std::to_string(2 * i), cout, cin, r);
    style_conv(d + "style_convs." + std::to_string(2 * i + 1), cout, cout, r);
    to_rgb(d + "to_rgbs." + std::to_string(i), cout, r);
  }
  for (int k = 0; k < 15; ++k) {
    const int64_t r = 4 << ((k + 1) / 2);
    n.w.add(d + "noises.noise" + std::to_string(k), {1, 1, r, r}, "randn");
  }
  for (int i = 0; i < 7; ++i) {  // SFT conditions at 8 .. 512, half the decoder's channels
    const int64_t r = 8 << i, c = unet(r);
    for (const char* kind : {"condition_scale.", "condition_shift."}) {
      const std::string p = kind + std::to_string(i) + ".";
      n.conv(p + "0.weight", c, c, 3, r, p + "0.bias");
      n.conv(p + "2.weight", c, c, 3, r, p + "2.bias");
    }
  }
  anitalker::write_checkpoint(path, n.w.tensors, "params_ema");
  std::printf("gfpgan     %zu tensors, %.1f M values\n", n.w.tensors.size(), n.w.values() / 1e6);
  return n.flops;
}

// ParseNet(in_size=512, out_size=512, parsing_ch=19), base 64, 10 residual
// blocks, channels clipped to [32, 256] (spec 4, appendix C).
double write_parsenet(const std::string& path) {
  Net n;
  auto layer = [&](const std::string& p, int64_t cout, int64_t cin, int64_t res, bool norm, bool run = true) {
    n.conv(p + ".conv2d.weight", cout, cin, 3, res, norm ? "" : p + ".conv2d.bias", run);
    if (norm) n.bn(p + ".norm.norm", cout);
  };
  layer("encoder.0", 64, 3, 512, false);
  const int64_t down[4][2] = {{64, 128}, {128, 256}, {256, 256}, {256, 256}};
  for (int b = 0; b < 4; ++b) {
    const int64_t r = 512 >> b, cin = down[b][0], cout = down[b][1];
    const std::string p = "encoder." + std::to_string(b + 1);
    layer(p + ".shortcut_func", cout, cin, r / 2, false);
    layer(p + ".conv1", cout, cin, r, true);
    layer(p + ".conv2", cout, cout, r / 2, true);
  }
  for (int b = 0; b < 10; ++b) {
    const std::string p = "body." + std::to_string(b);
    layer(p + ".conv1", 256, 256, 32, true);
    layer(p + ".conv2", 256, 256, 32, true);
  }
  const int64_t up[4][2] = {{256, 256}, {256, 256}, {256, 128}, {128, 64}};
  for (int b = 0; b < 4; ++b) {
    const int64_t r = 64 << b, cin = up[b][0], cout = up[b][1];
    const std::string p = "decoder." + std::to_string(b);
    layer(p + ".shortcut_func", cout, cin, r, false);
    layer(p + ".conv1", cout, cin, r, true);
    layer(p + ".conv2", cout, cout, r, true);
  }
  layer("out_img_conv", 3, 64, 512, false, false);  // not computed: only the mask is used
  layer("out_mask_conv", 19, 64, 512, false);
  anitalker::write_checkpoint(path, n.w.tensors);
  std::printf("parsenet   %zu tensors, %.1f M values\n", n.w.tensors.size(), n.w.values() / 1e6);
  return n.flops;
}

// RetinaFace-ResNet50 with the released "module." prefix (spec 3, appendix B);
// FLOPs for a size x size frame.
double write_retinaface(const std::string& path, int64_t size) {
  Net n;
  const std::string m = "module.";
  auto conv_bn = [&](const std::string& conv, const std::string& norm, int64_t cout, int64_t cin, int64_t k,
                     int64_t res) {
    n.conv(m + conv, cout, cin, k, res, "");
    n.bn(m + norm, cout);
  };
  conv_bn("body.conv1.weight", "body.bn1", 64, 3, 7, size / 2);
  int64_t c = 64, r = size / 4;  // after the stem's stride 2 and the max pool
  const int blocks[4] = {3, 4, 6, 3};
  int64_t stage_c[4] = {0, 0, 0, 0};
  for (int l = 0; l < 4; ++l) {
    const int64_t mid = 64 << l, out = 4 * mid;
    for (int b = 0; b < blocks[l]; ++b) {
      const int64_t stride = (l > 0 && b == 0) ? 2 : 1, ro = r / stride;
      const std::string p = "body.layer" + std::to_string(l + 1) + "." + std::to_string(b) + ".";
      conv_bn(p + "conv1.weight", p + "bn1", mid, c, 1, r);
      conv_bn(p + "conv2.weight", p + "bn2", mid, mid, 3, ro);
      conv_bn(p + "conv3.weight", p + "bn3", out, mid, 1, ro);
      if (b == 0) conv_bn(p + "downsample.0.weight", p + "downsample.1", out, c, 1, ro);
      c = out;
      r = ro;
    }
    stage_c[l] = c;
  }
  const int64_t res[3] = {size / 8, size / 16, size / 32};
  for (int k = 0; k < 3; ++k) {
    const std::string p = "fpn.output" + std::to_string(k + 1);
    conv_bn(p + ".0.weight", p + ".1", 256, stage_c[k + 1], 1, res[k]);
  }
  conv_bn("fpn.merge1.0.weight", "fpn.merge1.1", 256, 256, 3, res[0]);
  conv_bn("fpn.merge2.0.weight", "fpn.merge2.1", 256, 256, 3, res[1]);
  for (int k = 0; k < 3; ++k) {
    const std::string p = "ssh" + std::to_string(k + 1) + ".";
    conv_bn(p + "conv3X3.0.weight", p + "conv3X3.1", 128, 256, 3, res[k]);
    conv_bn(p + "conv5X5_1.0.weight", p + "conv5X5_1.1", 64, 256, 3, res[k]);
    conv_bn(p + "conv5X5_2.0.weight", p + "conv5X5_2.1", 64, 64, 3, res[k]);
    conv_bn(p + "conv7X7_2.0.weight", p + "conv7X7_2.1", 64, 64, 3, res[k]);
    conv_bn(p + "conv7x7_3.0.weight", p + "conv7x7_3.1", 64, 64, 3, res[k]);
  }
  const std::pair<const char*, int64_t> heads[3] = {{"ClassHead", 4}, {"BboxHead", 8}, {"LandmarkHead", 20}};
  for (const auto& [name, out] : heads)
    for (int k = 0; k < 3; ++k) {
      const std::string p = m + name + "." + std::to_string(k) + ".conv1x1.";
      n.conv(p + "weight", out, 256, 1, res[k], p + "bias");
    }
  anitalker::write_checkpoint(path, n.w.tensors);
  std::printf("retinaface %zu tensors, %.1f M values\n", n.w.tensors.size(), n.w.values() / 1e6);
  return n.flops;
}

}  // namespace

int bench_sr(int argc, char** argv) {
  return cli::run("bench sr", [&] {
    cli::Args a(argc, argv);
    int repeat = 3, threads = 0;
    std::string device = "cpu";
    // clang-format off
    while (!a.done()) {
      const std::string s = a.next();
      if (s == "--help" || s == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (s == "--repeat") repeat = static_cast<int>(a.integer(s, 1, 100));
      else if (s == "--threads") threads = static_cast<int>(a.integer(s, 1, 256));
      else if (s == "--device") device = a.value(s);
      else throw cli::UsageError("unknown option " + s);
    }
    // clang-format on
    cli::set_threads(threads);
    const c10::Device dev = anitalker::parse_device(device);
    c10::InferenceMode guard;
    auto sync = [&] {
      if (dev.is_cuda()) at::detail::getCUDAHooks().deviceSynchronize(dev.index());
    };
    std::printf("# anitalker bench sr: %s, device %s\n", anitalker::torch_info().c_str(), device.c_str());
    const double gemm = bench::gemm_gflops(dev);

    const std::string stem = bench::temp_path("sr");
    const double f_gfpgan = write_gfpgan(stem + "-gfpgan.pth");
    const double f_parse = write_parsenet(stem + "-parsenet.pth");
    const double f_det = write_retinaface(stem + "-retinaface.pth", 256);
    double t0 = bench::now_s();
    auto gfpgan = anitalker::gfpgan::Model::load(stem + "-gfpgan.pth", dev);
    auto parser = anitalker::parsenet::Model::load(stem + "-parsenet.pth", dev);
    auto detector = anitalker::retinaface::Model::load(stem + "-retinaface.pth", dev);
    std::printf("loaded in %.2f s\n", bench::now_s() - t0);
    for (const char* f : {"-gfpgan.pth", "-parsenet.pth", "-retinaface.pth"}) std::remove((stem + f).c_str());

    // Median and range of `repeat` timed runs after a warm-up.
    auto time = [&](const std::function<void()>& fn) {
      fn();
      sync();
      std::vector<double> t;
      for (int r = 0; r < repeat; ++r) {
        const double s0 = bench::now_s();
        fn();
        sync();
        t.push_back(bench::now_s() - s0);
      }
      return bench::stats(t);
    };
    std::printf("%-11s %10s %22s %9s %9s %8s\n", "", "ms", "range (ms)", "GFLOP", "GFLOP/s", "of GEMM");
    auto report = [&](const char* name, const bench::Stats& s, double flops) {
      if (flops > 0) {
        const double gf = flops / s.median / 1e9;
        std::printf("%-11s %10.0f %10.0f .. %-9.0f %9.1f %9.1f %7.0f%%\n", name, 1e3 * s.median, 1e3 * s.min,
                    1e3 * s.max, flops / 1e9, gf, 100 * gf / gemm);
      } else {
        std::printf("%-11s %10.0f %10.0f .. %-9.0f\n", name, 1e3 * s.median, 1e3 * s.min, 1e3 * s.max);
      }
    };

    at::manual_seed(0);
    const at::Tensor face = (at::rand({1, 3, 512, 512}) * 2 - 1).to(dev);
    const bench::Stats s_gfpgan = time([&] { gfpgan->forward(face); });
    report("gfpgan", s_gfpgan, f_gfpgan);
    const bench::Stats s_parse = time([&] { parser->labels(face); });
    report("parsenet", s_parse, f_parse);

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
        "rest: alignment, warps, conversions, mask and paste-back: %.1f%% of the filter's median (the "
        "detector found %lld faces on the random weights; one face was restored)\n",
        100 * s_rest.median / s_all.median, static_cast<long long>(found));
    std::printf("peak resident memory %.0f MB\n", cli::memory().peak / 1e6);
    std::printf(
        "reference (torch 1.13, OpenBLAS, 2 threads, idle): gfpgan 4550 ms (396 GFLOP, 55%% of GEMM), "
        "parsenet 6240 ms (469 GFLOP, 48%%), retinaface 190 ms, about 11 s a frame\n");
    return 0;
  });
}
