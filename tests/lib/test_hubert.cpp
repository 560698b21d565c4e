// HuBERT against transformers' HubertModel on the tiny fixture
// (tests/data/audio, spec/audio-features.md 1), with the README tolerances.
#include "device.h"
#include "hubert.h"
#include "feature_stream.h"
#include "kernels.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "error.h"
#include "state_dict.h"
#include "test_util.h"

#include <sys/stat.h>

#include <thread>

using anitalker::read_npy_tensor;
using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

const c10::Device kCpu(c10::kCPU);

std::shared_ptr<const anitalker::hubert::Model> tiny() {
  return anitalker::hubert::Model::load(data("audio/tiny_hubert"), kCpu);
}

at::Tensor wave() { return read_npy_tensor(data("audio/ref/input_f32.npy")); }

void expect_close(const at::Tensor& got, const at::Tensor& want, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  at::Tensor excess = (got - want).abs() - (atol + rtol * want.abs());
  EXPECT_LE(excess.max().item<double>(), 0.0) << what << ": max abs diff " << (got - want).abs().max().item<double>();
}

}  // namespace

TEST(Hubert, ConfigAndFrameCounts) {
  auto m = tiny();
  EXPECT_EQ(m->num_states(), 4);
  EXPECT_EQ(m->hidden(), 64);
  const auto& c = m->config();
  EXPECT_EQ(anitalker::hubert::receptive_field(c), 400);
  // floor((N - 400) / 320) + 1, and nothing below 400 samples (spec 1.2).
  for (int64_t n : {399, 400, 719, 720, 16000, 33337, 63841, 320000}) {
    const int64_t want = n < 400 ? 0 : (n - 400) / 320 + 1;
    EXPECT_EQ(anitalker::hubert::frame_count(c, n), want) << n;
  }
  EXPECT_EQ(anitalker::hubert::frame_count(c, 16000), 49);
  EXPECT_EQ(anitalker::hubert::frame_count(c, 33337), 103);
}

TEST(Hubert, NormalizedWave) {
  expect_close(anitalker::hubert::Model::normalize(wave()), read_npy_tensor(data("audio/ref/wav_normalized.npy")), 1e-5, 0,
               "wav_normalized");
}

TEST(Hubert, IntermediatesAndHiddenStates) {
  anitalker::hubert::Model::Taps taps;
  at::Tensor hs = tiny()->hidden_states(wave(), &taps);
  expect_close(taps.conv, read_npy_tensor(data("audio/ref/conv_features.npy")), 5e-5, 0, "conv_features");
  expect_close(taps.projected, read_npy_tensor(data("audio/ref/projected.npy")), 5e-5, 0, "projected");
  expect_close(taps.pos_conv, read_npy_tensor(data("audio/ref/pos_conv.npy")), 5e-5, 0, "pos_conv");
  expect_close(hs, read_npy_tensor(data("audio/ref/hidden_states.npy")), 1e-4, 1e-4, "hidden_states");
  at::Tensor padded = anitalker::hubert::pad_for_video(hs);
  expect_close(padded, read_npy_tensor(data("audio/ref/hubert_padded.npy")), 1e-4, 1e-4, "hubert_padded");
  EXPECT_TRUE(at::equal(padded.select(1, 103), padded.select(1, 102)));
}

// The conv encoder in pieces of audio (Model::conv_features: frames
// depend only on their receptive fields with per-frame layer norms): the
// same bits as the whole clip at once, for pieces of 1, 7, 100 (the
// default) frames, on the fixture (103 frames) and 4 times it, and the
// reference's conv features.  Fails with a piece's audio starting a sample
// late, or a piece one frame short (checked).
TEST(Hubert, ConvEncoderInPiecesAsTheWholeClip) {
  const at::Tensor x4 = at::cat({wave(), wave(), wave(), wave()});
  ::setenv("ANITALKER_HUBERT_CONV_PIECE", "0", 1);
  anitalker::hubert::Model::Taps whole;
  const at::Tensor want = tiny()->hidden_states(wave(), &whole), want4 = tiny()->hidden_states(x4);
  for (const char* piece : {"1", "7", "100"}) {
    ::setenv("ANITALKER_HUBERT_CONV_PIECE", piece, 1);
    anitalker::hubert::Model::Taps taps;
    const at::Tensor got = tiny()->hidden_states(wave(), &taps);
    EXPECT_TRUE(at::equal(taps.conv, whole.conv)) << piece << ": max abs diff "
                                                  << (taps.conv - whole.conv).abs().max().item<double>();
    EXPECT_TRUE(at::equal(got, want)) << piece;
    EXPECT_TRUE(at::equal(tiny()->hidden_states(x4), want4)) << piece;
    expect_close(taps.conv, read_npy_tensor(data("audio/ref/conv_features.npy")), 5e-5, 0, "conv_features");
  }
  ::unsetenv("ANITALKER_HUBERT_CONV_PIECE");
}

// The time-major path's two attentions: oneDNN's batched products over the
// heads (kernels.h attend_heads, the default) and LibTorch's
// (ANITALKER_HUBERT_DNN_ATTENTION=0), each against the reference, and within
// float32 rounding of each other; also on a clip long enough that the heads
// go in groups (kAllHeadsScores).  Fails with v read from k's columns in
// attend_heads (checked).
TEST(Hubert, AttentionPathsAgree) {
  const at::Tensor want = read_npy_tensor(data("audio/ref/hidden_states.npy"));
  const at::Tensor long_wave = wave().repeat({12});  // 1236 frames: 4 heads x 1236^2 scores > 512 Ki
  at::Tensor got[2], got_long[2];
  for (int dnn : {1, 0}) {
    ::setenv("ANITALKER_HUBERT_DNN_ATTENTION", dnn ? "1" : "0", 1);
    got[dnn] = tiny()->hidden_states(wave());
    got_long[dnn] = tiny()->hidden_states(long_wave);
    expect_close(got[dnn], want, 1e-4, 1e-4, dnn ? "oneDNN attention" : "LibTorch attention");
  }
  ::unsetenv("ANITALKER_HUBERT_DNN_ATTENTION");
  EXPECT_LE((got[1] - got[0]).abs().max().item<double>(), 5e-6);  // 0 and 1.4e-6 (AVX2) measured
  EXPECT_LE((got_long[1] - got_long[0]).abs().max().item<double>(), 1e-5);  // 2.1e-6 and 2.3e-6
}

// The channel-major transformer (cm_linear: the path where the linear layers
// are not packed: GPUs, builds without oneDNN's headers, types other than
// float32), here in float64 on the CPU, against the same reference; the
// float32 model above runs time-major with packed layers where it can.
TEST(Hubert, ChannelMajorPathInFloat64) {
  const std::string dir = data("audio/tiny_hubert");
  const anitalker::hubert::Model m(anitalker::hubert::read_config(dir + "/config.json"),
                                   anitalker::StateDict(anitalker::Checkpoint::open(dir + "/pytorch_model.bin")), kCpu,
                                   at::kDouble);
  anitalker::hubert::Model::Taps taps;
  const at::Tensor hs = m.hidden_states(wave(), &taps);
  EXPECT_EQ(hs.scalar_type(), at::kDouble);
  expect_close(taps.projected, read_npy_tensor(data("audio/ref/projected.npy")), 5e-5, 0, "projected");
  expect_close(taps.pos_conv, read_npy_tensor(data("audio/ref/pos_conv.npy")), 5e-5, 0, "pos_conv");
  expect_close(hs, read_npy_tensor(data("audio/ref/hidden_states.npy")), 1e-4, 1e-4, "hidden_states");
}

// The channel-major path in float32 as a GPU runs it (ANITALKER_GENERIC=1:
// nothing packed), against the reference as the float64 one above.
TEST(Hubert, GenericPathKeepsTheReference) {
  const std::string dir = data("audio/tiny_hubert");
  ::setenv("ANITALKER_GENERIC", "1", 1);
  const anitalker::hubert::Model m(anitalker::hubert::read_config(dir + "/config.json"),
                                   anitalker::StateDict(anitalker::Checkpoint::open(dir + "/pytorch_model.bin")), kCpu);
  ::unsetenv("ANITALKER_GENERIC");
  anitalker::hubert::Model::Taps taps;
  const at::Tensor hs = m.hidden_states(wave(), &taps);
  expect_close(taps.projected, read_npy_tensor(data("audio/ref/projected.npy")), 5e-5, 0, "projected");
  expect_close(hs, read_npy_tensor(data("audio/ref/hidden_states.npy")), 1e-4, 1e-4, "hidden_states");
  if (anitalker::PackedLinear::available()) {  // else (no oneDNN API in the build) the CPU's own path is this one
    EXPECT_FALSE(at::equal(hs, tiny()->hidden_states(wave())));  // another path, really
  }
}

// A window long enough for the time-major attention's one-head-at-a-time
// path (above 512 Ki scores: T = 416 with the fixture's 4 heads; the
// fixture itself, T = 104, takes all heads at once), against the
// channel-major float64 path that the fixture checks above.
TEST(Hubert, LongInputAttentionAsTheChannelMajorPath) {
  const std::string dir = data("audio/tiny_hubert");
  const anitalker::hubert::Model f64(anitalker::hubert::read_config(dir + "/config.json"),
                                     anitalker::StateDict(anitalker::Checkpoint::open(dir + "/pytorch_model.bin")), kCpu,
                                     at::kDouble);
  const at::Tensor x = at::cat({wave(), wave(), wave(), wave()});
  const at::Tensor got = tiny()->hidden_states(x), want = f64.hidden_states(x);
  ASSERT_EQ(got.size(1), 416);
  expect_close(got, want, 1e-4, 1e-4, "hidden_states of 4 x the fixture");
}

// precision=bf16 (a CPU with AVX512_BF16): the transformer's linear layers in
// bfloat16.  Held to the reference's hidden states by a bound relative to
// each state's largest value; the measured distance is printed.
TEST(Hubert, Bf16StaysNearTheReference) {
  TESTUTIL_BF16_OR_SKIP(anitalker::hubert::Model::load(data("audio/tiny_hubert"), kCpu, anitalker::Precision::Bf16));
  auto m = anitalker::hubert::Model::load(data("audio/tiny_hubert"), kCpu, anitalker::Precision::Bf16);
  EXPECT_NE(m, tiny());
  const at::Tensor hs = m->hidden_states(wave());
  const at::Tensor want = read_npy_tensor(data("audio/ref/hidden_states.npy"));
  ASSERT_EQ(hs.sizes(), want.sizes());
  const at::Tensor rel = (hs - want).abs().amax({1, 2}) / want.abs().amax({1, 2});
  for (int64_t i = 0; i < rel.size(0); ++i) std::printf("bf16 hidden state %lld: max |diff| / max |reference| %.3g\n", (long long)i, rel[i].item<double>());
  // State 0 (before the transformer) is float32: exact as above.
  EXPECT_LE(rel[0].item<double>(), 1e-4);
  EXPECT_LE(rel.max().item<double>(), 0.012);  // measured 0.0033-0.0057 (2026-12-04)
}

TEST(Hubert, TooShortInputIsAClearError) {
  EXPECT_THAT(error_of([] { tiny()->hidden_states(at::zeros({399})); }),
              HasSubstr("399 samples are too short for one feature frame (at least 400 samples are needed)"));
  EXPECT_EQ(tiny()->hidden_states(at::zeros({400})).sizes(), at::IntArrayRef({4, 1, 64}));
}

TEST(Hubert, NewWeightNormNamesAndHeadPrefix) {
  // transformers >= 4.3x saves the weight norm as parametrizations.weight.original0/1,
  // and a task-head model prefixes "hubert.": both load to the same result.
  testutil::TempDir dir;
  auto ckpt = anitalker::Checkpoint::open(data("audio/tiny_hubert/pytorch_model.bin"));
  std::vector<anitalker::TensorToWrite> ts;
  std::vector<std::vector<float>> keep;
  for (const std::string& k : ckpt->keys()) {
    std::string nk = "hubert." + k;
    const std::string g = "encoder.pos_conv_embed.conv.weight_g", v = "encoder.pos_conv_embed.conv.weight_v";
    if (k == g) nk = "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0";
    if (k == v) nk = "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original1";
    const std::vector<double> d = ckpt->at(k).to_doubles();
    keep.emplace_back(d.begin(), d.end());
    ts.push_back({nk, anitalker::DType::Float32, ckpt->at(k).shape, keep.back().data()});
  }
  ts.push_back({"lm_head.weight", anitalker::DType::Float32, {1}, keep.back().data()});
  ::mkdir((dir / "m").c_str(), 0777);
  anitalker::write_checkpoint(dir / "m/pytorch_model.bin", ts);
  testutil::spit(dir / "m/config.json", testutil::slurp(data("audio/tiny_hubert/config.json")));
  auto m = anitalker::hubert::Model::load(dir / "m", kCpu);
  at::Tensor x = wave().slice(0, 0, 8000);
  EXPECT_TRUE(at::allclose(m->hidden_states(x), tiny()->hidden_states(x), 1e-6, 1e-6));
}

// A HuBERT folder whose files are replaced while a model of it is held: the
// next load reads them again (the cache tells versions apart by the files
// in the folder, not its path alone); unchanged, the model is shared.
TEST(Hubert, ReplacedFolderFilesLoadAgain) {
  testutil::TempDir dir;
  ::mkdir((dir / "h").c_str(), 0777);
  for (const char* f : {"config.json", "pytorch_model.bin"})
    testutil::spit(dir / ("h/" + std::string(f)), testutil::slurp(data(std::string("audio/tiny_hubert/") + f)));
  auto a = anitalker::hubert::Model::load(dir / "h", kCpu);
  EXPECT_EQ(anitalker::hubert::Model::load(dir / "h", kCpu).get(), a.get());
  for (const char* f : {"config.json", "pytorch_model.bin"})
    testutil::spit(dir / ("h/" + std::string(f)), testutil::slurp(data(std::string("chain/chinese-hubert-large/") + f)));
  auto b = anitalker::hubert::Model::load(dir / "h", kCpu);
  EXPECT_NE(b.get(), a.get());
  const at::Tensor x = wave().slice(0, 0, 8000);
  const at::Tensor want = anitalker::hubert::Model::load(data("chain/chinese-hubert-large"), kCpu)->hidden_states(x);
  EXPECT_TRUE(at::equal(b->hidden_states(x), want));
}

// The conv encoder with either norm (config feat_extract_norm: "layer", as
// the fixture and chinese-hubert-large; "group", HuBERT-base's, which has no
// Python fixture) against plain conv1d / layer_norm / group_norm / gelu over
// the checkpoint's weights, written here apart from lib/hubert.cpp (which
// runs the encoder channel-major through oneDNN).
TEST(Hubert, ConvEncoderWithEitherNorm) {
  testutil::TempDir dir;
  auto ckpt = anitalker::Checkpoint::open(data("audio/tiny_hubert/pytorch_model.bin"));
  auto get = [&](const std::string& k) {
    const std::vector<double> d = ckpt->at(k).to_doubles();
    return at::tensor(d, at::kDouble).to(at::kFloat).reshape(ckpt->at(k).shape);
  };
  const std::string config = testutil::slurp(data("audio/tiny_hubert/config.json"));
  const std::string layer = "\"feat_extract_norm\": \"layer\"";
  ASSERT_NE(config.find(layer), std::string::npos);
  const int strides[] = {5, 2, 2, 2, 2, 2, 2};
  for (const std::string norm : {"layer", "group"}) {
    SCOPED_TRACE(norm);
    std::string c = config;
    c.replace(c.find(layer), layer.size(), "\"feat_extract_norm\": \"" + norm + "\"");
    ::mkdir((dir / norm).c_str(), 0777);
    testutil::spit(dir / (norm + "/config.json"), c);
    testutil::spit(dir / (norm + "/pytorch_model.bin"), testutil::slurp(data("audio/tiny_hubert/pytorch_model.bin")));
    anitalker::hubert::Model::Taps taps;
    anitalker::hubert::Model::load(dir / norm, kCpu)->hidden_states(wave(), &taps);
    at::Tensor x = anitalker::hubert::Model::normalize(wave()).view({1, 1, -1});
    for (int i = 0; i < 7; ++i) {
      const std::string p = "feature_extractor.conv_layers." + std::to_string(i) + ".";
      x = at::conv1d(x, get(p + "conv.weight"), get(p + "conv.bias"), strides[i]);
      const int64_t C = x.size(1);
      if (norm == "layer")
        x = at::layer_norm(x.transpose(1, 2), {C}, get(p + "layer_norm.weight"), get(p + "layer_norm.bias"), 1e-5)
                .transpose(1, 2);
      else if (i == 0)
        x = at::group_norm(x, C, get(p + "layer_norm.weight"), get(p + "layer_norm.bias"), 1e-5);
      x = at::gelu(x);
    }
    expect_close(taps.conv, x[0].t(), 1e-5, 1e-5, norm + " conv features");
  }
}

TEST(Hubert, BadConfigAndFolders) {
  testutil::TempDir dir;
  const std::string good = testutil::slurp(data("audio/tiny_hubert/config.json"));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t p = s.find(from);
    EXPECT_NE(p, std::string::npos) << from;
    s.replace(p, from.size(), to);
    testutil::spit(dir / "config.json", s);
    return error_of([&] { anitalker::hubert::read_config(dir / "config.json"); });
  };
  EXPECT_THAT(with("\"hidden_size\": 64", "\"hidden_sizes\": 64"), HasSubstr("config.json: missing field 'hidden_size'"));
  EXPECT_THAT(with("\"num_attention_heads\": 4", "\"num_attention_heads\": -4"),
              HasSubstr("config.json: field 'num_attention_heads' must be an integer from 1 to 1024, got -4"));
  EXPECT_THAT(with("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"),
              HasSubstr("hidden_size 64 is not a multiple of num_attention_heads 5"));
  EXPECT_THAT(with("\"do_stable_layer_norm\": true", "\"do_stable_layer_norm\": false"), HasSubstr("do_stable_layer_norm is false"));
  EXPECT_THAT(with("\"conv_kernel\": [", "\"conv_kernel\": [1e9, "), HasSubstr("field 'conv_kernel' must hold integers"));
  // Found by fuzz_config: a field of the wrong JSON type was an uncaught nlohmann exception.
  EXPECT_THAT(with("\"do_stable_layer_norm\": true", "\"do_stable_layer_norm\": \"yes\""),
              HasSubstr("config.json: a field has the wrong type"));
  EXPECT_THAT(with("\"conv_stride\": [\n    5,\n    2,\n    2,", "\"conv_stride\": [\n    4096,\n    4096,\n    4096,"),
              HasSubstr("receptive field or stride beyond 2^24 samples"));
  testutil::spit(dir / "config.json", "{ not json");
  EXPECT_THAT(error_of([&] { anitalker::hubert::read_config(dir / "config.json"); }), HasSubstr("config.json: not valid JSON"));
  EXPECT_THAT(error_of([&] { anitalker::hubert::Model::load(dir / "nothing", kCpu); }), HasSubstr("nothing: no such folder"));
  // A folder whose config does not match its weights: the key names it.
  ::mkdir((dir / "mismatch").c_str(), 0777);
  std::string wide = good;
  wide.replace(wide.find("\"hidden_size\": 64"), 17, "\"hidden_size\": 128");
  testutil::spit(dir / "mismatch/config.json", wide);
  testutil::spit(dir / "mismatch/pytorch_model.bin", testutil::slurp(data("audio/tiny_hubert/pytorch_model.bin")));
  EXPECT_THAT(error_of([&] { anitalker::hubert::Model::load(dir / "mismatch", kCpu); }),
              HasSubstr("pytorch_model.bin: feature_projection.projection.weight: expected shape [128, 32], got [64, 32]"));
}

// features::Stream (lib/feature_stream.h), the windowing of hubertenc,
// against the Python references: MFCC streamed in 100 ms pieces equals
// python_speech_features over the whole clip (mfcc39, 1e-4); HuBERT with a
// window longer than the clip is the offline run, padding frame included
// (hubert_padded, the demo's); HuBERT in 200 ms windows with 1 s of context
// and 100 ms of look-ahead gives every frame once.
TEST(FeatureStream, MatchesTheReferences) {
  using anitalker::features::Stream;
  using anitalker::features::StreamConfig;
  const at::Tensor x = wave();
  const float* p = x.data_ptr<float>();
  const int64_t n = x.numel();
  auto run = [&](Stream& s, int64_t chunk) {
    std::vector<float> out;
    for (int64_t i = 0; i < n; i += chunk) {
      s.push(p + i, std::min(chunk, n - i));
      const auto f = s.next(false);
      out.insert(out.end(), f.data.begin(), f.data.end());
    }
    const auto f = s.next(true);
    out.insert(out.end(), f.data.begin(), f.data.end());
    return out;
  };
  Stream mfcc(nullptr);
  const std::vector<float> m = run(mfcc, 1600);
  const at::Tensor want_m = read_npy_tensor(data("audio/ref/mfcc39.npy")).to(at::kFloat);
  ASSERT_EQ((int64_t)m.size(), want_m.numel());
  expect_close(at::from_blob(const_cast<float*>(m.data()), want_m.sizes(), at::kFloat), want_m, 1e-4, 0, "mfcc stream");

  StreamConfig whole;
  whole.window_ms = 5000;
  Stream h(tiny(), whole);
  const std::vector<float> hv = run(h, 1600);
  const at::Tensor want_h = read_npy_tensor(data("audio/ref/hubert_padded.npy"));  // [L, T + 1, D]
  const at::Tensor got_h =
      at::from_blob(const_cast<float*>(hv.data()), {want_h.size(1), want_h.size(0), want_h.size(2)}, at::kFloat)
          .transpose(0, 1);
  expect_close(got_h, want_h, 1e-4, 1e-4, "hubert stream, one window");
  EXPECT_EQ(h.emitted(), want_h.size(1));

  StreamConfig low;
  low.window_ms = 200;
  low.lookahead_ms = 100;
  Stream w(tiny(), low);
  const std::vector<float> wv = run(w, 320);
  EXPECT_EQ((int64_t)wv.size(), want_h.numel());
  EXPECT_LE(w.held_samples(), 16000 + 3200 + 1600 + 320);  // context + window + look-ahead + a piece
  EXPECT_THROW(Stream(nullptr, StreamConfig{100, 0, 200}), anitalker::Error);
}

// Stream::set_interrupt: called before each HuBERT layer of a pass; what it
// throws stops the pass and comes out of next(), with nothing sent (a flush
// while hubertenc encodes a long utterance offline); the same stream then
// gives the whole utterance, exact, once the check lets it.
TEST(FeatureStream, InterruptStopsThePass) {
  using anitalker::features::Stream;
  using anitalker::features::StreamConfig;
  struct Stop {};
  const at::Tensor x = wave();
  StreamConfig whole;
  whole.window_ms = 5000;
  Stream h(tiny(), whole);
  h.push(x.data_ptr<float>(), x.numel());
  int layers = 0;
  bool stop = true;
  h.set_interrupt([&]() {
    ++layers;
    if (stop && layers == 2) throw Stop();
  });
  EXPECT_THROW(h.next(true), Stop);
  EXPECT_EQ(layers, 2);
  EXPECT_EQ(h.emitted(), 0);
  stop = false;
  layers = 0;
  const auto f = h.next(true);
  EXPECT_EQ(layers, tiny()->num_states() - 1);  // once per transformer layer
  const at::Tensor want = read_npy_tensor(data("audio/ref/hubert_padded.npy"));  // [L, T + 1, D]
  ASSERT_EQ((int64_t)f.data.size(), want.numel());
  const at::Tensor got =
      at::from_blob(const_cast<float*>(f.data.data()), {want.size(1), want.size(0), want.size(2)}, at::kFloat)
          .transpose(0, 1);
  expect_close(got, want, 1e-4, 1e-4, "hubert after an interrupted pass");
}

// hubertenc's context-cache (features::StreamConfig::cache_context): each
// window encodes only its new frames (and look-ahead), attending to the
// keys and values its earlier windows kept.  Against the Python reference
// of the whole clip: the mean distance within a quarter more than encoding
// the context again (measured: printed); without context both are the same
// regions.
TEST(FeatureStream, ContextCache) {
  using anitalker::features::Stream;
  using anitalker::features::StreamConfig;
  const at::Tensor x = wave();
  const int64_t n = x.numel();
  const auto run = [&](const StreamConfig& cfg) {
    Stream s(tiny(), cfg);
    std::vector<float> out;
    for (int64_t i = 0; i < n; i += 320) {
      s.push(x.data_ptr<float>() + i, std::min<int64_t>(320, n - i));
      const auto f = s.next(false);
      out.insert(out.end(), f.data.begin(), f.data.end());
    }
    const auto f = s.next(true);
    out.insert(out.end(), f.data.begin(), f.data.end());
    const int64_t per = s.frame_floats();
    return at::from_blob(out.data(), {(int64_t)out.size() / per, per}, at::kFloat).clone();
  };
  const at::Tensor ref = read_npy_tensor(data("audio/ref/hubert_padded.npy")).to(at::kFloat);  // [L, T + 1, D]
  const at::Tensor want = ref.transpose(0, 1).reshape({ref.size(1), -1});
  for (StreamConfig cfg : {StreamConfig{520, 1000, 100}, StreamConfig{120, 1000, 40}, StreamConfig{200, 500, 0}}) {
    const at::Tensor plain = run(cfg);
    cfg.cache_context = true;
    const at::Tensor cached = run(cfg);
    ASSERT_EQ(cached.sizes(), want.sizes());
    const double dp = (plain - want).abs().mean().item<double>(), dc = (cached - want).abs().mean().item<double>();
    std::printf("window %d ms, context %d, look-ahead %d: mean abs from the reference %.5f encoding the context, "
                "%.5f cached; max %.3f / %.3f\n",
                cfg.window_ms, cfg.context_ms, cfg.lookahead_ms, dp, dc, (plain - want).abs().max().item<double>(),
                (cached - want).abs().max().item<double>());
    EXPECT_LE(dc, 1.25 * dp) << cfg.window_ms << "/" << cfg.context_ms << "/" << cfg.lookahead_ms;
    EXPECT_GT((cached - plain).abs().max().item<double>(), 1e-3);  // the cache was used
  }
  StreamConfig none{200, 0, 40};
  const at::Tensor plain = run(none);
  none.cache_context = true;
  expect_close(run(none), plain, 1e-4, 1e-4, "no context: the same regions");

  // The path without packed layers (GPUs, builds without oneDNN, other
  // types), here in float64: the same three windows through the cache as
  // the float32 time-major path.
  const std::string dir = data("audio/tiny_hubert");
  const anitalker::hubert::Model f64(anitalker::hubert::read_config(dir + "/config.json"),
                                     anitalker::StateDict(anitalker::Checkpoint::open(dir + "/pytorch_model.bin")), kCpu,
                                     at::kDouble);
  anitalker::hubert::Cache c32, c64;
  const at::Tensor norm = anitalker::hubert::Model::normalize(x);
  for (int64_t from : {0, 9600, 19200}) {  // 30 frames each; 25 kept, 20 of context
    const at::Tensor piece = norm.narrow(0, from, 9600 + 400);
    const at::Tensor a = tiny()->hidden_states_cached(piece, 25, 20, &c32);
    const at::Tensor b = f64.hidden_states_cached(piece, 25, 20, &c64);
    expect_close(a, b, 1e-4, 1e-4, "cached window from sample " + std::to_string(from));
    EXPECT_EQ(c32.frames(), 20);
    EXPECT_EQ(c64.pos.size(0), 20);
  }
}


// The cached windows of several streams in one pass (hubertenc's
// max-batch): each call's states are its own alone, bit for bit where the
// model's rows are independent on this machine (AVX-512 kernels), else
// within float rounding; through shared_windows, streams running at once
// give what each gives alone, and some of their windows did share a pass.
TEST(FeatureStream, WindowsOfSeveralStreamsInOnePass) {
  using anitalker::features::Stream;
  using anitalker::features::StreamConfig;
  using anitalker::hubert::Model;
  const auto model = tiny();
  const bool exact = model->rows_independent();
  std::printf("rows independent on this machine: %s\n", exact ? "yes" : "no");
  const at::Tensor norm = Model::normalize(wave());
  // Three streams' windows: two with caches of different lengths, one without.
  anitalker::hubert::Cache a1, b1, c1, a2, b2, c2;
  for (auto* c : {&a1, &a2}) model->hidden_states_cached(norm.narrow(0, 0, 9000), 20, 30, c);
  for (auto* c : {&b1, &b2}) model->hidden_states_cached(norm.narrow(0, 3200, 6400), 12, 8, c);
  const std::vector<Model::CachedCall> one = {{norm.narrow(0, 9600, 2000), 5, 30, &a1},
                                              {norm.narrow(0, 12800, 4000), 10, 8, &b1},
                                              {norm.narrow(0, 20000, 1000), 3, 0, &c1}};
  std::vector<Model::CachedCall> batch = one;
  batch[0].cache = &a2, batch[1].cache = &b2, batch[2].cache = &c2;
  const std::vector<at::Tensor> together = model->hidden_states_cached(batch);
  for (size_t i = 0; i < one.size(); ++i) {
    const at::Tensor alone = model->hidden_states_cached(std::vector<Model::CachedCall>{one[i]}).front();
    if (exact)
      EXPECT_TRUE(at::equal(alone, together[i])) << "call " << i;
    else
      expect_close(together[i], alone, 1e-5, 1e-5, "call " + std::to_string(i));
  }
  EXPECT_TRUE(at::equal(a1.k.back(), a2.k.back()) || !exact);
  EXPECT_EQ(b1.frames(), b2.frames());

  // The path without packed layers, which a GPU batches whatever its rows'
  // rounding (shared_windows), here in float64: the same calls in one pass
  // within float64 rounding of each alone, and of the float32 results.
  {
    const std::string dir = data("audio/tiny_hubert");
    const Model f64(anitalker::hubert::read_config(dir + "/config.json"),
                    anitalker::StateDict(anitalker::Checkpoint::open(dir + "/pytorch_model.bin")), kCpu, at::kDouble);
    anitalker::hubert::Cache d1, e1, f1, d2, e2, f2;
    for (auto* c : {&d1, &d2}) f64.hidden_states_cached(norm.narrow(0, 0, 9000), 20, 30, c);
    for (auto* c : {&e1, &e2}) f64.hidden_states_cached(norm.narrow(0, 3200, 6400), 12, 8, c);
    std::vector<Model::CachedCall> one64 = one, batch64 = one;
    one64[0].cache = &d1, one64[1].cache = &e1, one64[2].cache = &f1;
    batch64[0].cache = &d2, batch64[1].cache = &e2, batch64[2].cache = &f2;
    const std::vector<at::Tensor> together64 = f64.hidden_states_cached(batch64);
    for (size_t i = 0; i < one64.size(); ++i) {
      const at::Tensor alone = f64.hidden_states_cached(std::vector<Model::CachedCall>{one64[i]}).front();
      expect_close(together64[i], alone, 1e-10, 1e-10, "float64 call " + std::to_string(i));
      expect_close(together64[i], together[i], 1e-4, 1e-4, "float64 against float32, call " + std::to_string(i));
    }
    EXPECT_EQ(e2.frames(), b2.frames());
  }

  const StreamConfig cfgs[3] = {{520, 1000, 100, true}, {200, 500, 40, true}, {400, 500, 0, false}};
  const at::Tensor x = wave();
  const auto run = [&](const StreamConfig& cfg, std::shared_ptr<anitalker::hubert::WindowBatcher> executor) {
    Stream s(model, cfg);
    s.set_executor(std::move(executor));
    std::vector<float> out;
    for (int64_t i = 0; i < x.numel(); i += 320) {
      s.push(x.data_ptr<float>() + i, std::min<int64_t>(320, x.numel() - i));
      const auto f = s.next(false);
      out.insert(out.end(), f.data.begin(), f.data.end());
    }
    const auto f = s.next(true);
    out.insert(out.end(), f.data.begin(), f.data.end());
    return out;
  };
  std::vector<float> alone[3], shared[3];
  for (int i = 0; i < 3; ++i) alone[i] = run(cfgs[i], nullptr);
  const auto executor = anitalker::hubert::shared_windows(model, 3, std::chrono::milliseconds(50));
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { shared[i] = run(cfgs[i], executor); });
  for (std::thread& t : threads) t.join();
  const auto stats = executor->stats();
  std::printf("shared windows: %llu passes for %llu windows, at most %zu in one\n", (unsigned long long)stats.batches,
              (unsigned long long)stats.requests, stats.largest);
  EXPECT_GE(stats.largest, 2u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(shared[i].size(), alone[i].size());
    if (exact) {
      EXPECT_TRUE(shared[i] == alone[i]) << "stream " << i;
    } else {
      for (size_t j = 0; j < alone[i].size(); ++j)
        ASSERT_NEAR(shared[i][j], alone[i][j], 1e-5 + 1e-5 * std::fabs(alone[i][j])) << "stream " << i;
    }
  }
}

// features::warm_up: a live stream's first windows' shapes on silence, once
// for each model and setting; a model loaded again is warmed up again.
TEST(FeatureStream, WarmUpOncePerSetting) {
  anitalker::features::StreamConfig cfg{120, 1000, 40};
  auto m = tiny();
  // 1.4 s of silence (context + 3 windows + look-ahead) in hops of 6 frames
  // (120 ms), the first ready at 165 ms: 11 windows.
  EXPECT_EQ(anitalker::features::warm_up(m, cfg), 11);
  EXPECT_EQ(anitalker::features::warm_up(m, cfg), 0);  // this model met these shapes
  EXPECT_EQ(anitalker::features::warm_up(tiny(), cfg), 0);  // the same model, still held
  cfg.window_ms = 200;
  EXPECT_GT(anitalker::features::warm_up(m, cfg), 0);
  EXPECT_EQ(anitalker::features::warm_up(nullptr, cfg), 0);  // MFCC: nothing to set up
  const uint64_t id = m->model_id();
  m.reset();  // the last holder: the next load reads the file again
  m = tiny();
  EXPECT_NE(m->model_id(), id);
  EXPECT_GT(anitalker::features::warm_up(m, cfg), 0);
}
