// anitalker features: the audio features of the motion models, without
// GStreamer: HuBERT hidden states (padded as the demo pads them) or MFCC+deltas.
#include <ATen/ATen.h>

#include <cstdio>

#include "audio_input.h"
#include "cli.h"
#include "output_file.h"
#include "device.h"
#include "error.h"
#include "feature_stream.h"
#include "hubert.h"
#include "mfcc.h"
#include "npy.h"
#include "offline_limit.h"
#include "state_dict.h"

int cmd_features(int argc, char** argv) {
  return cli::run("features", [&] {
    std::string hubert_dir, audio, out, device = "cpu", precision = "fp32";
    bool mfcc = false, stream = false, context_cache = false;
    int threads = 0;
    unsigned offline_limit = anitalker::kOfflineLimitDefaultS;
    anitalker::features::StreamConfig scfg;
    cli::Options o("features", "The audio features of a speech file, as hubertenc makes them.  Give exactly one of "
                               "--hubert and --mfcc.");
    o.text("hubert|model", &hubert_dir, "DIR",
           "a HuBERT folder (config.json, pytorch_model.bin or model.safetensors), e.g. models/chinese-hubert-large: writes float32 "
           "[layers+1, T+1, hidden]: every hidden state, the last frame repeated once as the reference demo pads it "
           "(50 frames/s)");
    o.flag("mfcc", &mfcc, "13 MFCCs (c0 = log energy) and their N=1 and N=2 deltas: float32 [T, 39] (100 frames/s)");
    o.text("audio", &audio, "FILE",
           "16 kHz mono WAV is read as is; any other file is decoded and resampled with GStreamer, and the features "
           "then depend on its resampler")
        .required();
    o.text("out", &out, "F.npy", "the features").required();
    o.custom("stream", "W[,C[,L]]", 1,
             [&](const std::string& opt, const std::vector<std::string>& v) {
               // hubertenc's ranges: window 20-60000, context 0-30000,
               // lookahead 0-60000 and at most the window.
               const cli::UsageError bad(opt + ": expected W[,C[,L]] in ms, W from 20 to 60000, C from 0 to 30000, "
                                               "L from 0 to W (hubertenc's ranges), got '" + v[0] + "'");
               const std::vector<std::string> parts = cli::split(v[0]);
               if (parts.size() > 3) throw bad;
               const long long lo[3] = {20, 0, 0}, hi[3] = {60000, 30000, 60000};
               long long n[3] = {0, 1000, 0};
               try {
                 for (size_t i = 0; i < parts.size(); ++i) n[i] = cli::parse_integer(opt, parts[i], lo[i], hi[i]);
               } catch (const cli::UsageError&) {
                 throw bad;
               }
               if (n[2] > n[0]) throw bad;
               const int w = (int)n[0], c = (int)n[1], l = (int)n[2];
               stream = true;
               scfg = {w, c, l};
             },
             "as hubertenc streams (its window, context and lookahead properties), in 20 ms pieces: HuBERT windows "
             "of W ms with C ms of context (default 1000) and L ms of look-ahead (default 0); MFCC streams exactly");
    o.integer("offline-limit", &offline_limit, 0, anitalker::kOfflineLimitMaxS, "S",
              "without --stream: the longest audio HuBERT encodes in one piece, as hubertenc's offline-limit "
              "(its attention spans the whole clip: memory grows with the square of the length); 0 = no limit");
    o.flag("context-cache", &context_cache,
           "with --stream and --hubert: keep the context's keys and values from the windows that sent it instead "
           "of encoding its audio again (hubertenc's context-cache property)");
    o.precision(&precision,
                "HuBERT's arithmetic, as hubertenc's precision property: fp32 (exact), bf16 (a CPU with "
                "AVX512_BF16: the transformer's linear layers in bfloat16, 1.2-1.6x on 2 cores, not exact).  MFCC is always exact");
    o.device(&device, "HuBERT").threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    const anitalker::Precision prec = anitalker::parse_precision(precision);
    if (context_cache && (!stream || mfcc)) throw cli::UsageError("--context-cache goes with --stream and --hubert");
    scfg.cache_context = context_cache;
    if (mfcc == !hubert_dir.empty()) throw cli::UsageError("give exactly one of --hubert DIR and --mfcc");
    anitalker::check_output_path(out, {audio, hubert_dir});
    anitalker::check_npy_output(out);
    cli::set_threads(threads);
    const c10::Device dev = anitalker::parse_device(device);
    // Refused before any work, naming the option, the device and what it supports.
    if (!mfcc) anitalker::check_precision(prec, dev, "--precision", {anitalker::Precision::Fp32, anitalker::Precision::Bf16}, "HuBERT");
    if (mfcc && prec != anitalker::Precision::Fp32)
      std::fprintf(stderr, "anitalker features: note: --precision %s is for HuBERT; MFCC is computed exactly\n", precision.c_str());
    std::string note;
    std::vector<float> wave = read_audio_16k_mono(audio, &note);
    if (!note.empty()) std::fprintf(stderr, "anitalker features: note: %s: %s\n", audio.c_str(), note.c_str());
    if (wave.empty()) throw anitalker::format_error(audio + ": no audio samples");
    // Offline HuBERT over a long clip: refused before the work (full size,
    // 60 s took 3.6 GB, 120 s 4.5 GB; 10 minutes of the 32-wide test model
    // 4.5 GB, its attention alone 31253^2 floats).
    if (!stream && !mfcc) {
      const double seconds = (double)wave.size() / 16000;
      char b[64];
      std::snprintf(b, sizeof b, "%.1f s of audio", seconds);
      cli::check_offline_limit(audio + ": " + b, seconds, offline_limit, "offline HuBERT",
                               "give --stream 2000 (hubertenc's windows), or raise --offline-limit (0 = no limit)");
    }
    if (stream) {
      // hubertenc's own windowing (lib/feature_stream.h), 20 ms at a time.
      std::shared_ptr<const anitalker::hubert::Model> model;
      if (!mfcc) model = anitalker::hubert::Model::load(hubert_dir, dev, prec);
      anitalker::features::Stream st(model, scfg);
      // MFCC frames are gathered (39 floats each); HuBERT's states, [states,
      // T + 1, hidden] as the offline output (the padding frame included),
      // go out through a writer that holds one window (a 10-minute clip at
      // full size is a 3.2 GB file: it was gathered, then transposed).
      std::vector<float> f;
      std::unique_ptr<anitalker::PlaneMajorNpyWriter> states;
      if (!mfcc) states = std::make_unique<anitalker::PlaneMajorNpyWriter>(out, model->num_states(), model->hidden());
      auto take = [&](const anitalker::features::Frames& fr) {
        if (mfcc) {
          f.insert(f.end(), fr.data.begin(), fr.data.end());
        } else if (fr.count > 0) {
          states->append(fr.data.data(), fr.count);
        }
      };
      for (size_t i = 0; i < wave.size(); i += 320) {
        st.push(wave.data() + i, static_cast<int64_t>(std::min<size_t>(320, wave.size() - i)));
        take(st.next(false));
      }
      take(st.next(true));
      if (st.too_short()) throw anitalker::format_error(audio + ": too short for one HuBERT frame");
      const int64_t T = st.emitted();
      if (mfcc) {
        anitalker::write_npy(out, anitalker::DType::Float32, {T, 39}, f.data());
      } else {
        if (states->frames() != T)
          throw anitalker::Error(anitalker::Error::Kind::Runtime, out + ": " + std::to_string(states->frames()) +
                                                                      " frames written, the stream emitted " +
                                                                      std::to_string(T));
        states->commit();
      }
      std::fprintf(stderr,
                   "anitalker features: %lld frames streamed (window %d ms, context %d ms%s, look-ahead %d ms%s) to %s\n",
                   static_cast<long long>(T), scfg.window_ms, scfg.context_ms, scfg.cache_context ? " cached" : "",
                   scfg.lookahead_ms, mfcc ? "" : (", " + precision).c_str(), out.c_str());
    } else if (mfcc) {
      anitalker::Mfcc m = anitalker::mfcc(wave.data(), wave.size());
      const std::vector<double> d = m.stacked39();
      std::vector<float> f(d.begin(), d.end());
      anitalker::write_npy(out, anitalker::DType::Float32, {static_cast<int64_t>(m.frames), 39}, f.data());
      std::fprintf(stderr, "anitalker features: %zu MFCC frames (%zu video frames) to %s\n", m.frames,
                   anitalker::mfcc_video_frames(m.frames), out.c_str());
    } else {
      auto model = anitalker::hubert::Model::load(hubert_dir, dev, prec);
      // Too little audio is the file's fault (exit 1, naming it), as the
      // streaming path says it; the library's own check is for its callers.
      const int64_t n = static_cast<int64_t>(wave.size());
      if (anitalker::hubert::frame_count(model->config(), n) < 1)
        throw anitalker::format_error(audio + ": too short for one HuBERT frame (" + std::to_string(n) +
                                      " samples at 16 kHz; at least " +
                                      std::to_string(anitalker::hubert::receptive_field(model->config())) +
                                      " are needed)");
      at::Tensor x = at::from_blob(wave.data(), {static_cast<int64_t>(wave.size())}, at::kFloat);
      at::Tensor hs = anitalker::hubert::pad_for_video(model->hidden_states(x));
      anitalker::write_npy_tensor(out, hs);
      std::fprintf(stderr, "anitalker features: %lld HuBERT frames (+1 padding, %lld video frames), %lld states of %lld, %s, to %s\n",
                   static_cast<long long>(hs.size(1) - 1), static_cast<long long>(hs.size(1) / 2),
                   static_cast<long long>(hs.size(0)), static_cast<long long>(hs.size(2)), precision.c_str(), out.c_str());
    }
    return 0;
  });
}
