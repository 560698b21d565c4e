// anitalker bench motion: the full-size stage-2 networks (the released layout
// and widths, random weights), written as checkpoints and loaded through the
// normal path.  Checks the seed replay's draw count at full size, then times
// condition() and one denoiser pass, offline sampling at several step counts
// and windowed streaming over the same audio, with the fraction of this
// machine's float32 roof (FLOPs counted from the shapes) and peak memory.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <thread>

#include "bench_models.h"
#include "bench_util.h"
#include "cli.h"
#include "device.h"
#include "motion.h"
#include "motion_driver.h"

namespace {

using anitalker::motion::Variant;


struct VariantInfo {
  const char* tag;
  Variant v;
  int64_t draws;  // spec 7, full size, decoder_layers 2
};

const VariantInfo kVariants[] = {
    {"ha", Variant::HubertAudioOnly, 39524500},   {"hp", Variant::HubertPoseOnly, 40251927},
    {"hf", Variant::HubertFullControl, 41704217}, {"mp", Variant::MfccPoseOnly, 26464279},
    {"mf", Variant::MfccFullControl, 27916569},
};
constexpr int64_t kXtNumel = 32LL * 3 * 256 * 256;

// Reference (the issue: the original Python code, same machine class, 2
// threads, 250 frames): one denoiser pass (the original re-runs the whole
// network, audio branch included, at every step) and 50 DDIM steps.
const std::map<Variant, std::pair<double, double>> kReference = {
    {Variant::HubertAudioOnly, {0.29, 14.0}},
    {Variant::HubertFullControl, {0.51, 24.0}},
};

// FLOPs of the relative-position projection (linear_pos over 2T-1 rows) of
// one conformer block of width d.
double position_flops(double T, double d) { return 2 * (2 * T - 1) * d * d; }

// FLOPs of one conformer block stack (spec 3.2) over T frames of width d:
// the linears (FF hidden = d), the attention matmuls (scores, positional
// scores, weighted sum) and the convolution module; the position projection
// when `positions`.
double conformer_flops(double T, double d, int blocks, bool positions = true, double kernel = 13) {
  const double lin = 2 * T * d * d * (2 + 2 + 4 + 2 + 1);  // FF, macaron FF, q/k/v/out, pointwise 1 (2d), 2
  const double att = 2 * T * T * d + 2 * T * (2 * T - 1) * d + 2 * T * T * d;
  const double dw = 2 * T * d * kernel;
  return blocks * (lin + (positions ? position_flops(T, d) : 0) + att + dw);
}

// One denoiser pass: noisy/t projections, the decoder, out_proj.  The
// decoder's position projections do not depend on x_t or t: where the
// condition holds them (c.decoder_positions) they are counted there.
double denoise_flops(const anitalker::motion::Model& m, const anitalker::motion::Condition& c, double T) {
  const double D = m.decoder_dim(), M = m.motion_dim(), P = (D - m.speech_dim()) / 4;
  return 2 * T * M * P + 2 * T * P + conformer_flops(T, D, 2, c.decoder_positions.empty()) + 2 * T * D * M;
}

// condition(): layer weighting, downsampling convs, speech conformer (hubert)
// and the LSTM adapters (2 layers of hidden h, in -> out, per frame).
double condition_flops(const anitalker::motion::Model& m, const anitalker::motion::Condition& c, double T) {
  const double S = m.speech_dim(), h = 128;
  double f = c.decoder_positions.size() * position_flops(T, m.decoder_dim());
  if (m.hubert()) {
    f += 2 * m.hubert_layers() * 2 * T * m.audio_dim();
    f += 2 * T * S * m.audio_dim() * 3 + conformer_flops(T, S, 4);
  } else {
    f += 2 * 2 * T * 256 * m.audio_dim() * 3 + 2 * T * S * 256 * 3;
  }
  auto lstm = [&](double in, double out) { return 2 * T * 4 * h * (in + h) + 2 * T * 4 * h * (2 * h) + 2 * T * h * out; };
  if (m.has_pose()) f += lstm(S, 3) + lstm(3, S);
  if (m.has_location()) f += 2 * (lstm(S, 1) + lstm(1, S));
  return f;
}


}  // namespace

int bench_motion(int argc, char** argv) {
  return cli::run("bench motion", [&] {
    int seconds = 10, repeat = 3, threads = 0, nstreams = 1;
    std::vector<int> steps = {50, 25, 10};
    std::vector<const VariantInfo*> variants = {&kVariants[0], &kVariants[2]};
    std::vector<anitalker::motion::StreamConfig> streams(1);  // the element's defaults: 50:10:0, 50 steps
    bool no_stream = false, prof = false, bf16 = false;
    std::string device = "cpu";
    cli::Options o("bench motion",
                   "Builds each stage-2 variant at full size with random weights in the released layout, then:\n"
                   "  draws      the seed replay's draw count (init draws + x_T) against spec/motion.md 7\n"
                   "  condition  the audio branch and variance adapter over --seconds of audio (once per run)\n"
                   "  denoise    one denoiser pass over the same frames (once per DDIM step)\n"
                   "  offline    motion::generate at each --steps count, and each count's distance from the first's "
                   "motion (the same noise: what fewer steps cost)\n"
                   "  stream     motion::Stream over the same audio for each --stream configuration: time per "
                   "second of audio and real-time factor\n"
                   "  streams    with --streams N: N such streams at once (the first --stream configuration, each "
                   "its own seed) through motion::shared_windows, max-batch 1 against N\n"
                   "  kernels    a decoder-sized linear layer as OpenBLAS (at::linear) and as a oneDNN 1x1 "
                   "convolution, at the frame counts used above\n"
                   "Median and range of --repeat runs.");
    o.integer("seconds", &seconds, 1, 600, "N", "seconds of audio");
    o.integers("steps", &steps, 2, 1000, "LIST", "DDIM step counts of the offline runs");
    o.custom("variants", "LIST", 1,
             [&](const std::string& opt, const std::vector<std::string>& v) {
               variants.clear();
               for (const std::string& t : cli::split(v[0] == "all" ? "ha,hp,hf,mp,mf" : v[0])) {
                 const VariantInfo* found = nullptr;
                 for (const VariantInfo& vi : kVariants)
                   if (t == vi.tag) found = &vi;
                 if (!found) throw cli::UsageError(opt + ": expected a list of ha, hp, hf, mp, mf (or 'all'), got '" + t + "'");
                 variants.push_back(found);
               }
             },
             "ha hubert_audio_only, hp hubert_pose_only, hf hubert_full_control, mp mfcc_pose_only, mf "
             "mfcc_full_control, or all",
             "ha,hf");
    o.custom("stream", "W:C:L[:STEPS],...", 1,
             [&](const std::string& opt, const std::vector<std::string>& v) {
               streams.clear();
               for (const std::string& t : cli::split(v[0])) {
                 std::vector<int> x;
                 std::string u = t;
                 for (char& ch : u)
                   if (ch == ':') ch = ',';
                 try {
                   x = cli::parse_int_list(opt, u, 0, 100000);
                 } catch (const cli::UsageError&) {
                 }
                 if ((x.size() != 3 && x.size() != 4) || x[0] < 1 || (x.size() == 4 && x[3] < 1))
                   throw cli::UsageError(opt + ": expected WINDOW:CONTEXT:LOOKAHEAD[:STEPS] (frames, window >= 1), got '" + t + "'");
                 anitalker::motion::StreamConfig c;
                 c.window = x[0];
                 c.context = x[1];
                 c.lookahead = x[2];
                 c.steps = x.size() == 4 ? x[3] : 50;
                 anitalker::motion::ddim_timesteps(c.steps);
                 streams.push_back(c);
               }
             },
             "streaming configurations: window, context and look-ahead in frames (25 = 1 s), DDIM steps",
             "50:10:0:50, the element's");
    o.flag("no-stream", &no_stream, "skip the streaming runs");
    o.integer("streams", &nstreams, 1, 64, "N",
              "also N streams at once, their windows through one executor (anitalkermotion max-batch): max-batch 1 "
              "(in turns) against N (same-shape windows in one batch where the model is batch-exact)");
    o.integer("repeat", &repeat, 1, 100, "N", "runs of each");
    o.flag("profile", &prof, "list the ops of one denoiser pass by self time");
    o.flag("bf16", &bf16,
           "also offline and streaming at precision=bf16 (the denoiser's conformer blocks in bfloat16; a CPU with AVX512_BF16): "
           "its time against float32 and the distance of its motion from float32's");
    o.device(&device).threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    const bool stream = !no_stream;
    for (int st : steps) anitalker::motion::ddim_timesteps(st);  // a step count the stride rule cannot meet fails now
    if (!stream) streams.clear();
    // Line by line, so that a run stopped part-way (a timeout on a busy
    // machine) still leaves what it measured.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    cli::set_threads(threads);
    const c10::Device dev = anitalker::parse_device(device);
    at::NoGradGuard no_grad;
    auto sync = [&] {
      anitalker::synchronize(dev);
    };
    std::printf("# anitalker bench motion: %s, device %s\n", anitalker::torch_info().c_str(), device.c_str());
    const double roof = bench::roof_gflops(dev);
    {
      // The decoder's linear layers are 1024 x 1024 over the window's frames:
      // OpenBLAS (at::linear, as the model runs them) against oneDNN (the same
      // product as a 1x1 convolution), best of 10.
      std::vector<int64_t> frames = {25, 50, 25LL * seconds};
      for (const auto& sc : streams) frames.push_back(sc.window + sc.context + sc.lookahead);
      std::sort(frames.begin(), frames.end());
      frames.erase(std::unique(frames.begin(), frames.end()), frames.end());
      std::printf("kernels  1024x1024 linear over T frames, GFLOP/s, OpenBLAS at::linear / oneDNN 1x1 conv1d:");
      for (int64_t T : frames) {
        const at::TensorOptions o = at::TensorOptions().device(dev);
        const at::Tensor x = at::randn({1, T, 1024}, o), w = at::randn({1024, 1024}, o), b = at::randn({1024}, o);
        const at::Tensor xc = x.transpose(1, 2).contiguous(), wc = w.unsqueeze(2);
        auto best = [&](const std::function<void()>& fn) {
          fn();
          double t = 1e9;
          for (int r = 0; r < 10; ++r) {
            const double t0 = bench::now_s();
            fn();
            sync();
            t = std::min(t, bench::now_s() - t0);
          }
          return 2.0 * T * 1024 * 1024 / t / 1e9;
        };
        const double gl = best([&] { at::linear(x, w, b); }), gc = best([&] { at::conv1d(xc, wc, b); });
        std::printf("  T=%lld %.0f / %.0f", static_cast<long long>(T), gl, gc);
      }
      std::printf("\n");
    }
    bool draws_ok = true;

    for (const VariantInfo* vi : variants) {
      const std::string name = anitalker::motion::variant_name(vi->v);
      const std::string path = bench::temp_path("stage2") + ".ckpt";
      double t0 = bench::now_s();
      const size_t ntensors = bench::write_stage2(path, vi->v);
      const double t_write = bench::now_s() - t0;
      t0 = bench::now_s();
      auto model = anitalker::motion::Model::load(path, dev);
      const double t_load = bench::now_s() - t0;
      const auto model16 = bf16 ? anitalker::motion::Model::load(path, dev, anitalker::Precision::Bf16) : nullptr;
      std::remove(path.c_str());  // the mapping keeps the data
      const anitalker::motion::Model& m = *model;
      const std::string input = m.hubert() ? "hubert " + std::to_string(m.hubert_layers()) + " x " + std::to_string(m.audio_dim())
                                           : "mfcc " + std::to_string(m.audio_dim());
      std::printf("\n== %s: %zu tensors, %s, speech %d, decoder %d; written in %.2f s, loaded in %.2f s\n", name.c_str(), ntensors,
                  input.c_str(), m.speech_dim(), m.decoder_dim(), t_write, t_load);

      // Seed replay at full size (spec 7): the draws before noisyT.
      const bool ok = m.init_draws() == vi->draws && m.xT_numel() == kXtNumel && m.variant() == vi->v;
      draws_ok = draws_ok && ok;
      t0 = bench::now_s();
      m.seed_noise(0, 1);
      std::printf("draws    init %lld (spec %lld) + x_T %lld (spec %lld): %s; seed replay %.2f s\n",
                  static_cast<long long>(m.init_draws()), static_cast<long long>(vi->draws), static_cast<long long>(m.xT_numel()),
                  static_cast<long long>(kXtNumel), ok ? "OK" : "MISMATCH", bench::now_s() - t0);

      // The same audio for every run: random features in hubertenc's layout.
      const int64_t T = 25LL * seconds, pf = m.hubert() ? 2 : 4, n = pf * T;
      const at::Tensor feats = m.hubert() ? at::randn({n, m.hubert_layers(), m.audio_dim()}) : at::randn({n, m.audio_dim()});
      const at::Tensor audio = anitalker::motion::audio_input(m, feats);
      const at::Tensor start = at::randn({1, m.start_dim()}), direction = at::randn({1, m.motion_dim()});
      const anitalker::motion::Controls ctl;
      at::Tensor pose, location, scale;
      anitalker::motion::control_tensors(ctl, 0, T, &pose, &location, &scale);
      const at::Tensor noise = m.seed_noise(0, T);

      // condition() and one denoiser pass.
      m.condition(start, direction, audio, false);  // warm-up
      std::vector<double> tc, td;
      anitalker::motion::Condition c;
      for (int r = 0; r < repeat; ++r) {
        t0 = bench::now_s();
        c = m.condition(start, direction, audio, false);
        sync();
        tc.push_back(bench::now_s() - t0);
      }
      m.denoise(c, noise, 500);  // warm-up
      for (int r = 0; r < repeat; ++r) {
        t0 = bench::now_s();
        m.denoise(c, noise, 500);
        sync();
        td.push_back(bench::now_s() - t0);
      }
      const bench::Stats s_c = bench::stats(tc), s_d = bench::stats(td);
      const double fc = condition_flops(m, c, T), fd = denoise_flops(m, c, T);
      const auto ref = kReference.find(vi->v);
      std::printf("condition %lld frames: %.3f s (%.3f .. %.3f), %.1f GFLOP, %.1f GFLOP/s, %.0f%% of roof\n", static_cast<long long>(T),
                  s_c.median, s_c.min, s_c.max, fc / 1e9, fc / s_c.median / 1e9, 100 * fc / s_c.median / 1e9 / roof);
      std::printf("denoise  %lld frames: %.3f s (%.3f .. %.3f), %.1f GFLOP, %.1f GFLOP/s, %.0f%% of roof", static_cast<long long>(T),
                  s_d.median, s_d.min, s_d.max, fd / 1e9, fd / s_d.median / 1e9, 100 * fd / s_d.median / 1e9 / roof);
      if (ref != kReference.end() && seconds == 10) std::printf("   [Python reference, a constant: %.2f s per step]", ref->second.first);
      std::printf("\n");
      if (prof) bench::profile([&] { m.denoise(c, noise, 500); });

      // Offline: the whole utterance, as the demo.
      std::printf("%-14s %10s %22s %10s %9s %10s %10s\n", "offline", "s", "range", "ms per s", "RTF", "of roof", "Python ref");
      at::Tensor first_motion;  // the first --steps count's, for the others' distance from it
      for (int st : steps) {
        std::vector<double> tg;
        at::Tensor motion;
        for (int r = 0; r < repeat; ++r) {
          t0 = bench::now_s();
          motion = anitalker::motion::generate(m, start, direction, audio, ctl, noise, st).motion;
          sync();
          tg.push_back(bench::now_s() - t0);
        }
        const bench::Stats s = bench::stats(tg);
        const double gf = (fc + st * fd) / s.median / 1e9;
        std::printf("%3d steps      %10.2f %9.2f .. %-10.2f %10.1f %8.2fx %9.0f%%", st, s.median, s.min, s.max, 1000 * s.median / seconds,
                    seconds / s.median, 100 * gf / roof);
        if (ref != kReference.end() && seconds == 10 && st == 50)
          std::printf(" %7.1f s (%.2fx faster)", ref->second.second, ref->second.second / s.median);
        std::printf("\n");
        // What fewer steps cost: the same noise, the distance from the first count's motion.
        if (!first_motion.defined()) {
          first_motion = motion;
        } else {
          const at::Tensor d = (motion - first_motion).abs().to(at::kDouble);
          std::printf("  from %d steps: motion mean |diff| %.4f, max %.3f (mean |motion| %.3f)\n", steps.front(),
                      d.mean().item<double>(), d.max().item<double>(), first_motion.abs().mean().item<double>());
        }
        if (model16) {
          std::vector<double> t16;
          anitalker::motion::Generated g16;
          for (int r = 0; r < repeat; ++r) {
            t0 = bench::now_s();
            g16 = anitalker::motion::generate(*model16, start, direction, audio, ctl, noise, st);
            sync();
            t16.push_back(bench::now_s() - t0);
          }
          const anitalker::motion::Generated g = anitalker::motion::generate(m, start, direction, audio, ctl, noise, st);
          const at::Tensor d = (g16.motion - g.motion).abs();
          const bench::Stats s16 = bench::stats(t16);
          std::printf("  bf16        %10.2f %9.2f .. %-10.2f %.2fx float32; motion: max |diff| %.3g (%.3g of max |fp32|), "
                      "mean %.3g\n",
                      s16.median, s16.min, s16.max, s.median / s16.median, d.max().item<double>(),
                      d.max().item<double>() / g.motion.abs().max().item<double>(), d.mean().item<double>());
        }
      }

      // Streaming: features arrive a window at a time; each ready window is
      // generated at once (as the element does); with --bf16 at that
      // precision too.
      const auto run_streams = [&](const std::shared_ptr<const anitalker::motion::Model>& m, const char* tag) {
        for (const anitalker::motion::StreamConfig& sc : streams) {
          std::vector<double> tt, worst;
          int64_t windows = 0, held = 0;
          for (int r = 0; r < repeat; ++r) {
            anitalker::motion::Stream str(m, sc);
            str.set_codes(start, direction);
            str.set_controls(ctl);
            const int64_t fsize = feats.numel() / n;
            const float* src = feats.data_ptr<float>();
            double total = 0, wmax = 0;
            windows = 0;
            for (int64_t f = 0;;) {
              const int64_t k = std::min<int64_t>(pf * sc.window, n - f);
              str.push(src + f * fsize, k);
              f += k;
              const bool final = f >= n;
              while (str.ready(final)) {
                t0 = bench::now_s();
                str.next(final);
                sync();
                const double dt = bench::now_s() - t0;
                total += dt;
                wmax = std::max(wmax, dt);
                ++windows;
                held = std::max(held, str.held_features());
              }
              if (final) break;
            }
            tt.push_back(total);
            worst.push_back(wmax);
          }
          const bench::Stats st = bench::stats(tt), w = bench::stats(worst);
          std::printf("stream   %s%d:%d:%d, %d steps: %.2f s (%.2f .. %.2f) for %d s, %.1f ms per s, %.2fx real time; "
                      "%lld windows, slowest %.3f s (a window lasts %.3f s); at most %lld feature frames held\n",
                      tag, sc.window, sc.context, sc.lookahead, sc.steps, st.median, st.min, st.max, seconds,
                      1000 * st.median / seconds, seconds / st.median, static_cast<long long>(windows), w.median,
                      sc.window / 25.0, static_cast<long long>(held));
        }
      };
      run_streams(model, "");
      if (model16) run_streams(model16, "bf16 ");
      // N streams at once (threads pushing a window of features at a time as
      // fast as they go), their windows through motion::shared_windows.
      if (nstreams > 1 && !streams.empty())
        for (const auto& m : {model, model16}) {
          if (!m) continue;
          const anitalker::motion::StreamConfig sc = streams.front();
          std::vector<at::Tensor> first;  // max-batch 1's motion, to compare
          for (int max_batch : {1, nstreams}) {
            const auto executor = anitalker::motion::shared_windows(m, (size_t)max_batch, std::chrono::microseconds(2000));
            std::vector<at::Tensor> got(nstreams);
            t0 = bench::now_s();
            std::vector<std::thread> pool;
            for (int k = 0; k < nstreams; ++k)
              pool.emplace_back([&, k] {
                c10::InferenceMode guard;
                anitalker::motion::StreamConfig c = sc;
                c.seed = (uint64_t)k;
                anitalker::motion::Stream str(m, c);
                str.set_executor(executor);
                str.set_codes(start, direction);
                str.set_controls(ctl);
                const int64_t fsize = feats.numel() / n;
                const float* src = feats.data_ptr<float>();
                std::vector<at::Tensor> out;
                for (int64_t f = 0;;) {
                  const int64_t kf = std::min<int64_t>(pf * c.window, n - f);
                  str.push(src + f * fsize, kf);
                  f += kf;
                  const bool final = f >= n;
                  while (str.ready(final)) out.push_back(str.next(final).motion);
                  if (final) break;
                }
                got[k] = at::cat(out, 1);
              });
            for (std::thread& t : pool) t.join();
            sync();
            const double wall = bench::now_s() - t0;
            const auto st = executor->stats();
            bool same = true;
            if (first.empty())
              first = got;
            else
              for (int k = 0; k < nstreams; ++k) same = same && at::equal(first[k].cpu(), got[k].cpu());
            std::printf("streams  %d x %d s at %d:%d:%d, %d steps, %s, max-batch %d: %.2f s, %.2fx real time in all; "
                        "%llu calls for %llu windows (at most %zu in one); batch-exact here: %s%s\n",
                        nstreams, seconds, sc.window, sc.context, sc.lookahead, sc.steps,
                        anitalker::precision_name(m->precision()), max_batch, wall, nstreams * (double)seconds / wall,
                        (unsigned long long)st.batches, (unsigned long long)st.requests, st.largest,
                        m->batch_exact() ? "yes" : "no (one at a time)",
                        max_batch > 1 ? (same ? "; motion bit for bit max-batch 1's" : "; motion DIFFERS from max-batch 1's")
                                      : "");
          }
        }
      const cli::Memory mem = cli::memory();
      std::printf("memory   resident %.0f MB (%.0f MB anonymous, %.0f MB file-backed: weights, libraries), peak %.0f MB\n", mem.rss / 1e6,
                  mem.anon / 1e6, mem.file / 1e6, mem.peak / 1e6);
    }
    std::printf("\nseed replay draw counts at full size: %s\n", draws_ok ? "OK" : "MISMATCH");
    std::printf("constants, not measured in this run (the original Python code on a machine of the same class, 250 "
                "frames, docs/performance.md): denoiser pass 0.29 s (HA), 0.51 s (HF); 50 steps 14.0 s, 24.0 s\n");
    return draws_ok ? 0 : 1;
  });
}
