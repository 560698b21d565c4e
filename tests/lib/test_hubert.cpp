// HuBERT against transformers' HubertModel on the tiny fixture
// (tests/data/audio, spec/audio-features.md 1), with the README tolerances.
#include "hubert.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "error.h"
#include "state_dict.h"
#include "test_util.h"

#include <sys/stat.h>

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
