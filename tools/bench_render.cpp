// anitalker bench render: the full-size stage-1 network (256x256, style 512,
// the released channel table) with random weights, written as a checkpoint in
// the released layout and loaded through the normal path.  Reports the
// encoder time, frames per second of the decoder at several batch sizes, the
// peak memory, and the fraction of this machine's float32 roof (bench::roof_gflops) the
// decoder reaches (FLOPs counted from the layer shapes).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <functional>
#include <thread>

#include "bench_models.h"
#include "bench_util.h"
#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "cli.h"
#include "device.h"
#include "kernels.h"
#include "lia.h"
#include "state_dict.h"

namespace {


int64_t channels(int64_t res) { return res >= 256 ? 64 : res == 128 ? 128 : res == 64 ? 256 : 512; }

// Decoder multiply-adds x 2 per frame, from the layer shapes; the stride-2
// transposed convs counted at their input size (as the issue counts them).
double decoder_flops() {
  double f = 2.0 * 512 * 512 * 9 * 4 * 4;  // conv1 at 4x4
  for (int k = 0; k < 12; ++k) {
    const int64_t r = 8LL << (k / 2);
    const int64_t cout = channels(r), cin = k % 2 == 0 ? channels(r / 2) : cout;
    const double hw = k % 2 == 0 ? static_cast<double>(r / 2) * (r / 2) : static_cast<double>(r) * r;
    f += 2.0 * cout * cin * 9 * hw;
  }
  for (int j = 0; j < 6; ++j) {
    const double r = 8 << j;
    f += 2 * (2.0 * 3 * channels(8LL << j) * r * r);  // ToFlow + ToRGB 1x1 convs
  }
  return f;
}

// The CPU's float32 peak as far as the system tells it: threads x the clock
// /proc/cpuinfo reports (a VM's nominal clock, not the boost) x the vector
// lanes x 2 for a fused multiply-add.  How many FMA pipes a core has is not
// readable, so the figure is per pipe, and the measured roof is put against
// it (about 2 on a core with two).
void print_cpu_peak(double roof) {
#if defined(__x86_64__) || defined(__i386__)
  double mhz = 0;
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "cpu MHz : %lf", &mhz) == 1) break;
    std::fclose(f);
  }
  if (mhz <= 0) return;
  __builtin_cpu_init();
  const bool fma = __builtin_cpu_supports("fma");
  const int lanes = __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("avx") ? 8 : 4;
  const char* isa = lanes == 16 ? "AVX-512" : lanes == 8 ? "AVX" : "SSE";
  const int threads = at::get_num_threads();
  const double peak = threads * mhz / 1e3 * lanes * (fma ? 2 : 1);
  std::printf("cpu      %d threads x %.0f MHz (/proc/cpuinfo: the clock the system reports, not the boost) x %d float32 "
              "lanes (%s)%s = %.1f GFLOP/s for one vector pipe a core; the roof is %.2f of that\n",
              threads, mhz, lanes, isa, fma ? " x 2 (FMA)" : "", peak, roof / peak);
#else
  (void)roof;
#endif
}

// Which OpenBLAS kernels the sgemm ran on, for the roof line: " (OpenBLAS's
// Haswell kernels, pinned by OPENBLAS_CORETYPE)", " (OpenBLAS's Cooperlake
// kernels, its own choice)"; "" when LibTorch's BLAS is not OpenBLAS.  The
// figure differs by about 2x between the two on AVX-512 CPUs.
std::string openblas_kernels() {
  using CoreName = char* (*)();
  const auto core_name = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* core = core_name ? core_name() : nullptr;
  if (core == nullptr) return "";
  const char* pinned = std::getenv("OPENBLAS_CORETYPE");
  return std::string(" (OpenBLAS's ") + core + " kernels, " +
         (pinned && *pinned ? "pinned by OPENBLAS_CORETYPE" : "its own choice") + ")";
}

}  // namespace

double bench::roof_gflops(c10::Device dev) {
  // Median of 5 timed runs of `fn` after one warm-up, in seconds.
  auto time5 = [&](const std::function<void()>& fn) {
    fn();
    anitalker::synchronize(dev);
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) {
      const double t0 = bench::now_s();
      fn();
      anitalker::synchronize(dev);
      t.push_back(bench::now_s() - t0);
    }
    return bench::stats(t);
  };
  const auto opt = at::TensorOptions().device(dev);
  const at::Tensor ga = at::randn({2048, 2048}, opt), gb = at::randn({2048, 2048}, opt);
  const bench::Stats sg = time5([&] { at::mm(ga, gb); });
  // The best of the 5 runs: the roof is a peak, and on a shared machine a
  // burst of another process can slow three of five runs (a median that read
  // half the roof made a stage look at 159% of it).
  const double gemm = 2.0 * 2048 * 2048 * 2048 / sg.min / 1e9;
  const at::Tensor x = at::randn({4, 512, 32, 32}, opt), w = at::randn({512, 512, 3, 3}, opt);
  const bench::Stats sc = time5([&] { at::conv2d(x, w, {}, 1, 1); });
  const double conv = 2.0 * 4 * 512 * 512 * 9 * 32 * 32 / sc.min / 1e9;
  const double roof = std::max(gemm, conv);
  std::printf("roof     sgemm 2048^2 f32%s: %.1f GFLOP/s (best %.3f s, median %.3f, max %.3f); conv 3x3 512->512 "
              "4x32x32 f32: %.1f GFLOP/s (best %.3f s, median %.3f, max %.3f); \"of roof\" is of %.1f\n",
              dev.is_cpu() ? openblas_kernels().c_str() : "", gemm, sg.min, sg.median, sg.max, conv, sc.min, sc.median,
              sc.max, roof);
  if (dev.is_cpu()) {
    print_cpu_peak(roof);
    // The stages' 3x3 convolutions of one image run as Winograd where they
    // can (kernels.h): fewer products than the direct convolution's count,
    // which the GFLOP/s figures keep, so a stage can pass 100% of the roof.
    if (anitalker::winograd_bytes(512, 32, 32, 512) > 0) {
      const anitalker::PackedConv packed(w, {1, 1});
      const at::Tensor x1 = at::randn({1, 512, 32, 32}).contiguous(at::MemoryFormat::ChannelsLast);
      const bench::Stats sw = time5([&] { packed(x1, 1, 1); });
      const double wino = 2.0 * 512 * 512 * 9 * 32 * 32 / sw.min / 1e9;
      std::printf("winograd conv 3x3 512->512 1x32x32 f32 as the stages run it (oneDNN's Winograd F(4x4,3x3)): %.1f "
                  "GFLOP/s counted as the direct convolution's products, %.2f of the roof (best %.4f s, median %.4f); "
                  "the stages' 3x3 convolutions of one image at 16x16 and larger run so (ANITALKER_WINOGRAD=0: "
                  "direct)\n",
                  wino, wino / roof, sw.min, sw.median);
    } else {
      std::printf("winograd not used here (ANITALKER_WINOGRAD=0, or no AVX-512 Winograd kernel in this oneDNN)\n");
    }
  }
  return roof;
}

int bench_render(int argc, char** argv) {
  return cli::run("bench render", [&] {
    std::vector<int> batches = {1, 4, 16};
    int repeat = 3, frames = 16, threads = 0, pace = 0, seconds = 20;
    bool bf16 = false, fp16 = false;
    bool prof = false, graphs = false, nhwc = false;
    double flow_scale = 1;
    std::string device = "cpu";
    cli::Options o("bench render",
                   "Builds the full-size stage-1 network (256x256, style 512, motion 20, channels 64..512 as "
                   "released) with random weights, then times:\n"
                   "  roof     a 2048x2048 float32 matmul and a 3x3 convolution 512->512: this machine's float32 "
                   "roof, measured in the same run (the \"of roof\" denominator)\n"
                   "  cpu      on the CPU: threads x the clock /proc/cpuinfo reports x float32 lanes x 2 (FMA), "
                   "the peak of one vector pipe a core, and the roof against it\n"
                   "  winograd on the CPU: a Winograd 3x3 convolution 512->512 of one image, as the stages' 3x3 "
                   "convolutions run (GFLOP/s counted as the direct one's products, so a stage can pass 100% of the "
                   "roof; ANITALKER_WINOGRAD=0: direct)\n"
                   "  encode   one encoder pass (once per portrait)\n"
                   "  render   the decoder at each batch size (median of --repeat runs of at least --frames frames), "
                   "in frames per second and GFLOP/s\n"
                   "and the peak resident memory.");
    o.integers("batch", &batches, 1, 256, "LIST", "decoder batch sizes");
    o.integer("repeat", &repeat, 1, 100, "N", "runs of each");
    o.integer("frames", &frames, 1, 1024, "N", "frames at least per run");
    o.flag("profile", &prof,
           "then list the ops of one frame's decoding (batch 1) by self time (with --bf16 or --fp16, also that "
           "path's)");
    o.flag("bf16", &bf16,
           "also the decoder at precision=bf16 (its modulated convolutions in bfloat16, the rest float32; a CPU "
           "with AVX512_BF16): its speed against float32 and the 8-bit distance of its frames from float32's");
    o.flag("fp16", &fp16,
           "the same at precision=fp16 (a CUDA device: the modulated convolutions in float16, the rest float32)");
    o.flag("graphs", &graphs,
           "then the decoder replayed as CUDA graphs (one recorded per batch size; a CUDA device, in a build with "
           "them; on the CPU emulated, a dry run whose times mean nothing): frames per second against the same batch without, and how far its frames are from those (the "
           "same kernels: 0 expected); with --bf16 or --fp16 that path's too; with --pace the paced frames through "
           "graphs");
    o.flag("channels-last", &nhwc,
           "then the decoder channels-last (NHWC activations and weights; a GPU's option, "
           "ANITALKER_CHANNELS_LAST=1 for the elements): per batch, its speed paired with the NCHW decoder's and "
           "how far its frames are from those; with --bf16 or --fp16 that path's too; with --graphs its graphs too");
    o.integer("pace", &pace, 1, 1000, "FPS",
              "then render one frame at a time at FPS frames per second for --seconds, as the element does live, "
              "and report the CPU this takes (process CPU time / wall time, in cores) and the frames that missed "
              "their slot: the renderer's share of the CPU")
        .shows("");
    o.integer("seconds", &seconds, 1, 3600, "N", "with --pace: how long");
    o.number("flow-scale", &flow_scale, 0.001, 10, "G",
             "the standard deviation of the random ToFlow weights (1: as every other weight). Smaller flows: the "
             "warps move the portrait's features less far, as a trained model's do; for seeing how the distance "
             "of --bf16 or --fp16 frames from float32's depends on how far the warps move");
    o.device(&device).threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    if (bf16 && fp16) throw cli::UsageError("give --bf16 or --fp16, not both");
    const bool low = bf16 || fp16;
    const anitalker::Precision lowp = fp16 ? anitalker::Precision::Fp16 : anitalker::Precision::Bf16;
    const char* lname = anitalker::precision_name(lowp);
    cli::set_threads(threads);
    const c10::Device dev = anitalker::parse_device(device);
    at::NoGradGuard no_grad;
    auto sync = [&] {
      anitalker::synchronize(dev);
    };
    // Seconds a frame over `runs` calls of m.render(pp, motion), to 8-bit frames.
    auto per_frame = [&](const anitalker::lia::Model& m, const anitalker::lia::Portrait& pp, const at::Tensor& motion,
                         int runs) {
      const double s0 = bench::now_s();
      for (int i = 0; i < runs; ++i) anitalker::lia::to_uint8(m.render(pp, motion));
      sync();
      return (bench::now_s() - s0) / (runs * motion.size(0));
    };
    // The largest difference of two renders' 8-bit frames, in levels.
    auto levels_apart = [](const at::Tensor& a, const at::Tensor& b) {
      return (anitalker::lia::to_uint8(a).to(at::kInt) - anitalker::lia::to_uint8(b).to(at::kInt)).abs().max().item<int>();
    };
    std::printf("# anitalker bench render: %s, device %s\n", anitalker::torch_info().c_str(), device.c_str());

    const double roof = bench::roof_gflops(dev);

    const std::string path = bench::temp_path("stage1") + ".ckpt";
    bench::Stage1Shape shape;
    shape.flow_scale = static_cast<float>(flow_scale);
    bench::write_stage1(path, shape);
    double t0 = bench::now_s();
    auto model = anitalker::lia::Model::load(path, dev);
    const double t_load = bench::now_s() - t0;
    // Refused here, naming the device and what it supports (bf16: a CPU
    // with AVX512_BF16; fp16: a CUDA device).
    const auto model16 = low ? anitalker::lia::Model::load(path, dev, lowp) : nullptr;
    using Graphs = anitalker::lia::Model::Graphs;
    // On the CPU the graphs are emulated (a dry run of this benchmark: the
    // inputs' copies and the comparison; its times mean nothing); on a GPU
    // a build without graphs is refused here, before the runs.
    const Graphs graphs_on = dev.is_cpu() ? Graphs::Emulated : Graphs::On;
    if (graphs) {
      model->set_graphs(graphs_on);
      model->set_graphs(Graphs::Off);
    }
    // The same weights channels-last (Model's nhwc), for --channels-last.
    std::shared_ptr<const anitalker::lia::Model> model_cl, model16_cl;
    if (nhwc) {
      if (!anitalker::generic_path(dev))
        throw cli::UsageError("--channels-last: for a GPU (the CPU's own path runs channels-last in float32 already; "
                              "ANITALKER_GENERIC=1 runs a GPU's path on the CPU, a dry run)");
      const anitalker::StateDict sd(anitalker::Checkpoint::open(path));
      model_cl = std::make_shared<const anitalker::lia::Model>(sd, dev, at::kFloat, anitalker::Precision::Fp32, true);
      if (low) model16_cl = std::make_shared<const anitalker::lia::Model>(sd, dev, at::kFloat, lowp, true);
    }
    std::remove(path.c_str());  // the mapping keeps the data
    std::printf("model    %dx%d, style %d, motion %d, %d levels%s; loaded in %.2f s\n", model->size(), model->size(),
                model->style_dim(), model->motion_dim(), model->levels(),
                flow_scale != 1 ? (", ToFlow weights' deviation " + std::to_string(flow_scale)).c_str() : "", t_load);

    at::Tensor image = at::rand({1, 3, 256, 256}).mul(2).sub(1);
    model->encode(image);  // warm-up
    std::vector<double> te;
    anitalker::lia::Portrait p;
    for (int r = 0; r < repeat; ++r) {
      t0 = bench::now_s();
      p = model->encode(image);
      sync();
      te.push_back(bench::now_s() - t0);
    }
    const bench::Stats se = bench::stats(te);
    std::printf("encode   %.3f s (%.3f .. %.3f)   [Python reference, a constant from another run: 0.60 s]\n", se.median, se.min, se.max);

    const double flops = decoder_flops();
    std::printf("decoder  %.2f GFLOP per frame\n", flops / 1e9);
    std::printf("%-6s %10s %10s %22s %10s %9s\n", "batch", "s/frame", "fps", "range (fps)", "GFLOP/s", "of roof");
    std::map<int, double> fp32_median;
    for (int b : batches) {
      const int runs = std::max(1, (frames + b - 1) / b);
      at::Tensor motion = at::randn({b, model->motion_dim()}).mul(0.5);
      model->render(p, motion);  // warm-up
      sync();
      std::vector<double> tf;
      for (int r = 0; r < repeat; ++r) tf.push_back(per_frame(*model, p, motion, runs));
      const bench::Stats s = bench::stats(tf);
      fp32_median[b] = s.median;
      const double gf = flops / s.median / 1e9;
      std::printf("%-6d %10.4f %10.2f %10.2f .. %-9.2f %10.1f %8.0f%%\n", b, s.median, 1 / s.median, 1 / s.max, 1 / s.min, gf,
                  100 * gf / roof);
    }
    // Each batch's eager and graph runs, the same motion: the speed-up and
    // the distance (raw frames on [-1, 1], and 8-bit levels).
    auto graph_runs = [&](const anitalker::lia::Model& m, const anitalker::lia::Portrait& pp,
                          const std::map<int, double>& eager, const char* name) {
      for (int b : batches) {
        const int runs = std::max(1, (frames + b - 1) / b);
        const at::Tensor motion = at::randn({b, m.motion_dim()}).mul(0.5);
        m.set_graphs(Graphs::Off);
        const at::Tensor ref = m.render(pp, motion).to(at::kCPU);
        m.set_graphs(graphs_on);
        const double r0 = bench::now_s();
        const at::Tensor got = m.render(pp, motion).to(at::kCPU);  // records
        const double record = bench::now_s() - r0;
        const double raw = (got - ref).abs().max().item<double>();
        const int levels = levels_apart(got, ref);
        std::vector<double> tf;
        for (int r = 0; r < repeat; ++r) tf.push_back(per_frame(m, pp, motion, runs));
        const bench::Stats s = bench::stats(tf);
        const auto e = eager.find(b);
        std::printf("graphs %s %-6d %8.4f s/frame %8.2f fps (%.2f .. %.2f), %.2fx without; recorded in %.2f s; "
                    "from the frames without: max %.2g raw, %d levels\n",
                    name, b, s.median, 1 / s.median, 1 / s.max, 1 / s.min, e == eager.end() ? 0.0 : e->second / s.median,
                    record, raw, levels);
      }
      std::printf("graphs %s %s\n", name, m.graphs_status().c_str());
      m.set_graphs(Graphs::Off);
    };
    if (graphs) graph_runs(*model, p, fp32_median, "fp32");
    // NCHW against channels-last, the same weights and motion, each run
    // paired with one of the other just before it.
    auto layout_runs = [&](const anitalker::lia::Model& m, const anitalker::lia::Portrait& pm,
                           const anitalker::lia::Model& mc, const char* name) {
      const anitalker::lia::Portrait pc = mc.encode(image);
      std::map<int, double> cl_median;
      for (int b : batches) {
        const int runs = std::max(1, (frames + b - 1) / b);
        const at::Tensor motion = at::randn({b, m.motion_dim()}).mul(0.5);
        const at::Tensor ref = m.render(pm, motion).to(at::kCPU), got = mc.render(pc, motion).to(at::kCPU);
        const double raw = (got - ref).abs().max().item<double>();
        const int levels = levels_apart(got, ref);
        std::vector<double> tf, ratio;
        for (int r = 0; r < repeat; ++r) {
          const double t = per_frame(m, pm, motion, runs);
          tf.push_back(per_frame(mc, pc, motion, runs));
          ratio.push_back(t / tf.back());
        }
        const bench::Stats st = bench::stats(tf), q = bench::stats(ratio);
        cl_median[b] = st.median;
        std::printf("nhwc %s %-6d %8.4f s/frame %8.2f fps (%.2f .. %.2f); paired with an NCHW run each: %.2fx "
                    "(%.2f .. %.2f); from the NCHW frames: max %.2g raw, %d levels\n",
                    name, b, st.median, 1 / st.median, 1 / st.max, 1 / st.min, q.median, q.min, q.max, raw, levels);
      }
      if (graphs) graph_runs(mc, pc, cl_median, (std::string(name) + " nhwc").c_str());
    };
    if (nhwc) layout_runs(*model, p, *model_cl, "fp32");
    if (dev.is_cpu() && anitalker::cpu_memory_peak() > 0) {
      // The tensor memory one call takes (measured by the CPU allocator:
      // lib/device.h cpu_memory_peak), the CPU's way (one image at a time)
      // and a GPU's (the batch as one tensor, run here on the CPU), against
      // lib's estimate, which the renderer checks max-batch x batch-size by.
      std::printf("memory   MB a call takes beyond the weights and the portrait, measured / estimated:");
      for (int b : batches) {
        const at::Tensor motion = at::randn({b, model->motion_dim()}).mul(0.5);
        double got[2];
        for (int one = 0; one < 2; ++one) {
          const size_t base = anitalker::cpu_memory_peak(true);
          const std::vector<const anitalker::lia::Portrait*> rows(b, &p);
          anitalker::lia::to_uint8(one ? model->render(rows, motion, true) : model->render(p, motion));
          got[one] = (double)(anitalker::cpu_memory_peak() - base);
        }
        std::printf("  batch %d: per image %.0f / %.0f, one batch %.0f / %.0f", b, got[0] / 1e6,
                    model->call_bytes(b, false) / 1e6, got[1] / 1e6, model->call_bytes(b, true) / 1e6);
      }
      std::printf("\n");
    }
    if (prof) {
      const at::Tensor motion = at::randn({1, model->motion_dim()}).mul(0.5);
      bench::profile([&] { anitalker::lia::to_uint8(model->render(p, motion)); });
    }
    if (low) {
      // precision=bf16 or fp16 against float32: the same portrait codes and
      // motion.
      const anitalker::lia::Portrait p16 = model16->encode(image);
      const at::Tensor motion = at::randn({16, model->motion_dim()}).mul(0.5);
      const at::Tensor ref = anitalker::lia::to_uint8(model->render(p, motion)).to(at::kInt);
      const at::Tensor got = anitalker::lia::to_uint8(model16->render(p16, motion)).to(at::kInt);
      const at::Tensor d = (got - ref).abs().to(at::kFloat).flatten();
      const double p999 = at::quantile(d.index({at::indexing::Slice(0, 16000000)}), 0.999).item<double>();
      const double mse = d.pow(2).mean().item<double>();
      std::printf("%s     16 frames against float32: 8-bit max %d levels, p99.9 %.0f, mean %.3f, PSNR %.1f dB\n",
                  lname, d.max().item<int>(), p999, d.mean().item<double>(), mse > 0 ? 10 * std::log10(255.0 * 255.0 / mse) : 999.0);
      if (prof) {
        const at::Tensor m1 = at::randn({1, model->motion_dim()}).mul(0.5);
        std::printf("%s profile:\n", lname);
        bench::profile([&] { anitalker::lia::to_uint8(model16->render(p16, m1)); });
      }
      std::map<int, double> low_median;
      for (int b : batches) {
        const int runs = std::max(1, (frames + b - 1) / b);
        const at::Tensor mb = at::randn({b, model->motion_dim()}).mul(0.5);
        model16->render(p16, mb);
        sync();
        // Each run paired with a float32 run just before it: this machine's
        // speed drifts by more than the difference measured, and a pair's
        // ratio sees the same moment.
        std::vector<double> tf, ratio;
        for (int r = 0; r < repeat; ++r) {
          const double t32 = per_frame(*model, p, mb, runs);
          tf.push_back(per_frame(*model16, p16, mb, runs));
          ratio.push_back(t32 / tf.back());
        }
        const bench::Stats s = bench::stats(tf), q = bench::stats(ratio);
        low_median[b] = s.median;
        std::printf("%s %-6d %8.4f s/frame %8.2f fps (%.2f .. %.2f), %.2fx float32's fps (its median above); "
                    "paired with a float32 run each: %.2fx (%.2f .. %.2f)\n",
                    lname, b, s.median, 1 / s.median, 1 / s.max, 1 / s.min, fp32_median[b] / s.median, q.median, q.min,
                    q.max);
      }
      if (graphs) graph_runs(*model16, p16, low_median, lname);
      if (nhwc) layout_runs(*model16, p16, *model16_cl, lname);
    }
    if (pace > 0) {
      // Live pacing: one frame per slot, then sleep to the next slot (with
      // --graphs, each frame a replay).
      model->set_graphs(graphs ? graphs_on : Graphs::Off);
      const at::Tensor motion = at::randn({1, model->motion_dim()}).mul(0.5);
      const int total = pace * seconds;
      const double period = 1.0 / pace;
      std::vector<double> tf;
      int late = 0;
      const double cpu0 = bench::cpu_s(), w0 = bench::now_s();
      for (int i = 0; i < total; ++i) {
        const double slot = w0 + i * period, s0 = bench::now_s();
        anitalker::lia::to_uint8(model->render(p, motion));
        sync();
        const double s1 = bench::now_s();
        tf.push_back(s1 - s0);
        if (s1 > slot + period) ++late;
        if (slot + period > s1) std::this_thread::sleep_for(std::chrono::duration<double>(slot + period - s1));
      }
      const double wall = bench::now_s() - w0, cpu = bench::cpu_s() - cpu0;
      const bench::Stats s = bench::stats(tf);
      std::printf("paced    %d fps for %d s%s: CPU %.3f cores (%.1f%% of one core), frame %.1f ms (%.1f .. %.1f), %d of %d late\n",
                  pace, seconds, graphs ? " (graphs)" : "", cpu / wall, 100 * cpu / wall, 1e3 * s.median, 1e3 * s.min, 1e3 * s.max, late, total);
    }
    const cli::Memory m = cli::memory();
    std::printf("peak resident memory %.0f MB\n", m.peak / 1e6);
    std::printf("constants, not measured in this run (the Python reference on a machine of the same class, docs/performance.md): "
                "0.56 s/frame at batch 1, 1.08 at 4, 1.24 at 8\n");
    return 0;
  });
}
