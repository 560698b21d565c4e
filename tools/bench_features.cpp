// anitalker bench features: full-size HuBERT-large (24 layers, 1024 wide)
// with random weights, written as config.json + pytorch_model.bin and loaded
// through the normal path; and the MFCC path.  Reports the load time, ms per
// second of audio for several clip lengths, GFLOP/s against this machine's
// float32 roof (FLOPs counted from the config), and the peak memory.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <unistd.h>

#include <cstdio>
#include <thread>

#include "bench_models.h"
#include "bench_util.h"
#include "cli.h"
#include "device.h"
#include "feature_stream.h"
#include "hubert.h"
#include "mfcc.h"

namespace {


// FLOPs of one forward pass over t frames of n samples, from the config.
double hubert_flops(const anitalker::hubert::Config& c, int64_t n) {
  double f = 0;
  int64_t len = n, cin = 1;
  for (size_t i = 0; i < c.conv_dim.size(); ++i) {
    len = (len - c.conv_kernel[i]) / c.conv_stride[i] + 1;
    f += 2.0 * c.conv_dim[i] * cin * c.conv_kernel[i] * len;
    cin = c.conv_dim[i];
  }
  const double T = static_cast<double>(len), H = c.hidden, F = c.intermediate;
  f += 2.0 * H * cin * T;                                  // projection
  f += 2.0 * H * (H / c.pos_groups) * c.pos_kernel * T;    // positional conv
  f += c.layers * (2.0 * T * (4 * H * H + 2 * H * F)      // QKV, out, FFN
                   + 4.0 * T * T * H);                     // scores and weighted sum
  return f;
}

}  // namespace

int bench_features(int argc, char** argv) {
  return cli::run("bench features", [&] {
    std::vector<int> seconds = {1, 5, 20};
    int repeat = 3, layers = 24, threads = 0, streams = 1;
    bool bf16 = false, no_stream = false, prof = false;
    std::string device = "cpu";
    cli::Options o("bench features",
                   "Builds HuBERT-large (chinese-hubert-large's layout, random weights), then times the forward pass "
                   "(all hidden states) on clips of each length, and the MFCC path on the same clips.");
    o.integers("seconds", &seconds, 1, 600, "LIST", "clip lengths in seconds");
    o.integer("repeat", &repeat, 1, 100, "N", "runs of each; the median and range are printed");
    o.integer("layers", &layers, 1, 48, "N", "transformer layers (24 released)");
    o.flag("bf16", &bf16,
           "also HuBERT at precision=bf16 (its transformer's linear layers in bfloat16; a CPU with AVX512_BF16): "
           "its time per clip against float32 and the distance of its hidden states from float32's");
    o.flag("no-stream", &no_stream, "skip the streaming runs");
    o.integer("streams", &streams, 1, 64, "N",
              "also N streams at once at the balanced preset's windows (520 + 1000 ms, 100 ms look-ahead, context "
              "cached) through one shared executor (hubertenc's max-batch): their windows one pass each, then as "
              "many in one pass as are waiting; 1 = none");
    o.flag("profile", &prof, "then list the ops of one HuBERT pass over the last clip by self time");
    o.device(&device).threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    cli::set_threads(threads);
    const c10::Device dev = anitalker::parse_device(device);
    at::NoGradGuard no_grad;
    std::printf("# anitalker bench features: %s, device %s\n", anitalker::torch_info().c_str(), device.c_str());

    const double roof = bench::roof_gflops(dev);

    const std::string dir = bench::temp_path("hubert");
    bench::write_hubert_large(dir, layers);
    double t0 = bench::now_s();
    auto model = anitalker::hubert::Model::load(dir, dev);
    const double t_load = bench::now_s() - t0;
    // Refused here, naming the device, when the CPU has no AVX512_BF16.
    const auto model16 = bf16 ? anitalker::hubert::Model::load(dir, dev, anitalker::Precision::Bf16) : nullptr;
    bench::remove_tree(dir);  // the mapping keeps the data
    std::printf("hubert   %d layers x %d, %d states; loaded in %.2f s   [transformers, a constant from another run: 11-15 s]\n", layers, model->hidden(),
                model->num_states(), t_load);
    std::printf("%-8s %12s %22s %10s %9s %12s\n", "clip", "ms per s", "range", "GFLOP/s", "of roof", "MFCC ms/s");
    for (int sec : seconds) {
      const int64_t n = 16000LL * sec;
      at::Tensor wave = at::randn({n}).mul(0.1);
      model->hidden_states(wave.slice(0, 0, 16000));  // warm-up
      // The first pass at this length pays the set-up of every new shape
      // (an offline utterance always does: its length is new).
      t0 = bench::now_s();
      model->hidden_states(wave);
      const double first = bench::now_s() - t0;
      std::vector<double> th, tm;
      for (int r = 0; r < repeat; ++r) {
        t0 = bench::now_s();
        at::Tensor hs = model->hidden_states(wave);
        th.push_back(bench::now_s() - t0);
        t0 = bench::now_s();
        anitalker::Mfcc m = anitalker::mfcc(wave.data_ptr<float>(), static_cast<size_t>(n));
        tm.push_back(bench::now_s() - t0);
      }
      const bench::Stats s = bench::stats(th), sm = bench::stats(tm);
      const double gf = hubert_flops(model->config(), n) / s.median / 1e9;
      std::printf("%-6d s %12.1f %9.1f .. %-10.1f %10.1f %8.0f%% %12.2f   (first pass at this length %.1f ms per s)\n",
                  sec, 1000 * s.median / sec, 1000 * s.min / sec, 1000 * s.max / sec, gf, 100 * gf / roof,
                  1000 * sm.median / sec, 1000 * first / sec);
      if (prof && sec == seconds.back()) bench::profile([&] { model->hidden_states(wave); });
      if (model16) {
        model16->hidden_states(wave.slice(0, 0, 16000));  // warm-up
        std::vector<double> t16;
        at::Tensor hs16;
        for (int r = 0; r < repeat; ++r) {
          t0 = bench::now_s();
          hs16 = model16->hidden_states(wave);
          t16.push_back(bench::now_s() - t0);
        }
        const at::Tensor ref = model->hidden_states(wave);
        // Per state: max |diff| over max |fp32|, and the mean |diff|; the
        // worst state printed, and the last (what the motion model weighs in).
        const at::Tensor d = (hs16 - ref).abs();
        const at::Tensor rel = d.amax({1, 2}) / ref.abs().amax({1, 2});
        const int64_t worst = rel.argmax().item<int64_t>();
        const bench::Stats s16 = bench::stats(t16);
        std::printf("  bf16 %12.1f %9.1f .. %-10.1f  %.2fx float32; hidden states: worst state %lld max %.3g of its "
                    "max (mean abs %.3g), last state %.3g (mean abs %.3g)\n",
                    1000 * s16.median / sec, 1000 * s16.min / sec, 1000 * s16.max / sec, s.median / s16.median,
                    static_cast<long long>(worst), rel[worst].item<double>(), d[worst].mean().item<double>(),
                    rel[-1].item<double>(), d[-1].mean().item<double>());
      }
    }
    std::printf("GFLOP per second of audio (HuBERT, from the config): %.1f at 1 s\n", hubert_flops(model->config(), 16000) / 1e9);
    // Streaming as hubertenc does it (lib/feature_stream.h, the element's
    // own windowing): 10 s of audio pushed in 20 ms pieces; real-time
    // factor = 10 s / the time it took.
    // Each also with the context cache (hubertenc's context-cache): the
    // context's keys and values kept instead of its audio encoded again.
    for (const auto& wc : no_stream ? std::vector<std::pair<int, int>>{}
                                    : std::vector<std::pair<int, int>>{{2000, 1000}, {500, 1000}, {120, 1000}})
    for (bool cached : {false, true}) {
      at::Tensor wave = at::randn({160000}).mul(0.1).contiguous();
      const float* w = wave.data_ptr<float>();
      std::vector<double> tw;
      for (int r = 0; r < repeat; ++r) {
        anitalker::features::Stream st(model, {wc.first, wc.second, 0, cached});
        t0 = bench::now_s();
        for (int64_t i = 0; i < 160000; i += 320) {
          st.push(w + i, 320);
          st.next(false);
        }
        st.next(true);
        tw.push_back(bench::now_s() - t0);
      }
      const bench::Stats s = bench::stats(tw);
      std::printf("streaming window %d ms + context %d ms%s: 10 s of audio in %.2f s (%.2f .. %.2f), %.2fx real "
                  "time, latency %d ms + compute\n",
                  wc.first, wc.second, cached ? " cached" : "", s.median, s.min, s.max, 10.0 / s.median, wc.first);
    }
    if (streams > 1) {
      // N live-like streams (threads pushing 20 ms pieces as fast as they
      // go) through hubert::shared_windows: max-batch 1 (each window its own
      // pass, in turns) against max-batch N (waiting windows in one pass).
      at::Tensor wave = at::randn({160000}).mul(0.1).contiguous();
      const float* w = wave.data_ptr<float>();
      for (const auto& m : {model, model16})
      for (int max_batch : {1, streams}) {
        if (!m) continue;
        const auto executor = anitalker::hubert::shared_windows(m, (size_t)max_batch, std::chrono::microseconds(2000));
        t0 = bench::now_s();
        std::vector<std::thread> pool;
        for (int k = 0; k < streams; ++k)
          pool.emplace_back([&] {
            anitalker::features::Stream st(m, {520, 1000, 100, true});
            st.set_executor(executor);
            for (int64_t i = 0; i < 160000; i += 320) {
              st.push(w + i, 320);
              st.next(false);
            }
            st.next(true);
          });
        for (std::thread& t : pool) t.join();
        const double wall = bench::now_s() - t0;
        const auto st = executor->stats();
        std::printf("streams  %d x 10 s at 520 + 1000 ms cached, %s, max-batch %d: %.2f s, %.2fx real time in all; "
                    "%llu passes for %llu windows (at most %zu in one)%s\n",
                    streams, anitalker::precision_name(m->precision()), max_batch, wall, streams * 10.0 / wall,
                    (unsigned long long)st.batches, (unsigned long long)st.requests, st.largest,
                    max_batch > 1 && !m->rows_independent() ? " [rows not independent here: one at a time]" : "");
      }
    }
    const cli::Memory mem = cli::memory();
    std::printf("memory   resident %.0f MB (%.0f MB anonymous, %.0f MB file-backed: weights, libraries), peak %.0f MB\n",
                mem.rss / 1e6, mem.anon / 1e6, mem.file / 1e6, mem.peak / 1e6);
    std::printf("constants, not measured in this run (transformers on a machine of the same class, docs/performance.md): "
                "0.45 s for 1 s, 1.96 s for 5 s, 10.9 s for 20 s\n");
    return 0;
  });
}
