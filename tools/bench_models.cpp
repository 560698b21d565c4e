#include "bench_models.h"

#include "bench_util.h"
#include "cli.h"
#include "npy.h"

#include <ftw.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <stdexcept>

namespace bench {

void RandomCheckpoint::add(const std::string& key, std::vector<int64_t> shape, const char* init, float scale) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  buffers.emplace_back(static_cast<size_t>(n));
  std::vector<float>& b = buffers.back();
  const std::string kind = init;
  if (kind == "randn") {
    std::normal_distribution<float> nd(0.f, scale);
    for (float& v : b) v = nd(rng);
  } else if (kind == "one") {
    std::fill(b.begin(), b.end(), 1.f);
  } else if (kind == "uniform") {
    std::uniform_real_distribution<float> u(-scale, scale);
    for (float& v : b) v = u(rng);
  } else if (kind == "blur" || kind == "blur4") {
    const float k[4] = {1, 3, 3, 1};
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) b[i * 4 + j] = k[i] * k[j] / 64.f * (kind == "blur4" ? 4.f : 1.f);
  }  // "zero": left at 0
  tensors.push_back({key, anitalker::DType::Float32, std::move(shape), b.data()});
}

void RandomCheckpoint::add_int64(const std::string& key, int64_t value) {
  ints.push_back(value);
  tensors.push_back({key, anitalker::DType::Int64, {}, &ints.back()});
}

int64_t RandomCheckpoint::values() const {
  int64_t n = 0;
  for (const auto& b : buffers) n += static_cast<int64_t>(b.size());
  return n;
}

void write_hubert_large(const std::string& dir, int layers, RandomCheckpoint* keep) {
  HubertShape shape;
  shape.layers = layers;
  write_hubert(dir, shape, keep);
}

void write_hubert(const std::string& dir, const HubertShape& shape, RandomCheckpoint* keep) {
  RandomCheckpoint local;
  RandomCheckpoint& w = keep ? *keep : local;
  const int64_t C = shape.conv, H = shape.hidden, F = shape.ffn, K = shape.pos_kernel, G = shape.pos_groups;
  const int layers = shape.layers;
  w.add("masked_spec_embed", {H}, "uniform", 1.f);
  const int kernels[7] = {10, 3, 3, 3, 3, 2, 2};
  for (int i = 0; i < 7; ++i) {
    const std::string p = "feature_extractor.conv_layers." + std::to_string(i) + ".";
    w.add(p + "conv.weight", {C, i ? C : 1, kernels[i]}, "randn", i ? 0.03f : 0.3f);
    w.add(p + "conv.bias", {C}, "zero");
    w.add(p + "layer_norm.weight", {C}, "one");
    w.add(p + "layer_norm.bias", {C}, "zero");
  }
  w.add("feature_projection.layer_norm.weight", {C}, "one");
  w.add("feature_projection.layer_norm.bias", {C}, "zero");
  w.add("feature_projection.projection.weight", {H, C}, "randn", 0.02f);
  w.add("feature_projection.projection.bias", {H}, "zero");
  w.add("encoder.pos_conv_embed.conv.bias", {H}, "zero");
  w.add("encoder.pos_conv_embed.conv.weight_g", {1, 1, K}, "one");
  w.add("encoder.pos_conv_embed.conv.weight_v", {H, H / G, K}, "randn", 0.02f);
  w.add("encoder.layer_norm.weight", {H}, "one");
  w.add("encoder.layer_norm.bias", {H}, "zero");
  for (int l = 0; l < layers; ++l) {
    const std::string p = "encoder.layers." + std::to_string(l) + ".";
    for (const char* m : {"k_proj", "v_proj", "q_proj", "out_proj"}) {
      w.add(p + "attention." + m + ".weight", {H, H}, "randn", 0.02f);
      w.add(p + "attention." + m + ".bias", {H}, "zero");
    }
    w.add(p + "layer_norm.weight", {H}, "one");
    w.add(p + "layer_norm.bias", {H}, "zero");
    w.add(p + "feed_forward.intermediate_dense.weight", {F, H}, "randn", 0.02f);
    w.add(p + "feed_forward.intermediate_dense.bias", {F}, "zero");
    w.add(p + "feed_forward.output_dense.weight", {H, F}, "randn", 0.02f);
    w.add(p + "feed_forward.output_dense.bias", {H}, "zero");
    w.add(p + "final_layer_norm.weight", {H}, "one");
    w.add(p + "final_layer_norm.bias", {H}, "zero");
  }
  if (!dir.empty()) {
    cli::make_folder(dir);
    w.write(dir + "/pytorch_model.bin");
    // Written whole under a temporary name and renamed (a plain truncating
    // write, killed half-way, left a cut config.json; a full disk was not
    // named): anitalker::write_file_atomic.
    std::ostringstream cfg;
    std::string convs;
    for (int i = 0; i < 7; ++i) convs += (i ? ", " : "") + std::to_string(C);
    cfg << "{\n  \"architectures\": [\"HubertModel\"], \"model_type\": \"hubert\",\n"
        << "  \"hidden_size\": " << H << ", \"num_hidden_layers\": " << layers << ", \"num_attention_heads\": "
        << shape.heads << ",\n  \"intermediate_size\": " << F
        << ", \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-05,\n"
           "  \"do_stable_layer_norm\": true, \"feat_extract_norm\": \"layer\", \"feat_extract_activation\": \"gelu\",\n"
        << "  \"conv_dim\": [" << convs << "], \"conv_kernel\": [10, 3, 3, 3, 3, 2, 2],\n"
           "  \"conv_stride\": [5, 2, 2, 2, 2, 2, 2], \"conv_bias\": true,\n"
        << "  \"num_conv_pos_embeddings\": " << K << ", \"num_conv_pos_embedding_groups\": " << G << "\n}\n";
    anitalker::write_file_atomic(dir + "/config.json", cfg.str());
    anitalker::write_file_atomic(dir + "/preprocessor_config.json",
                                 "{\n  \"do_normalize\": true, \"feature_extractor_type\": \"Wav2Vec2FeatureExtractor\",\n"
                                 "  \"feature_size\": 1, \"padding_side\": \"right\", \"padding_value\": 0, "
                                 "\"return_attention_mask\": false,\n  \"sampling_rate\": 16000\n}\n");
  }
}



void write_stage1(const std::string& path) { write_stage1(path, Stage1Shape()); }

void write_stage1(const std::string& path, const Stage1Shape& shape) {
  RandomCheckpoint w;
  const int64_t S = shape.style, M = shape.motion, size = shape.size;
  int L = 0;
  while ((4LL << L) < size) ++L;
  if ((4LL << L) != size) throw std::runtime_error("write_stage1: the size must be 4 times a power of 2");
  // Channels at a resolution; from 8x8 down every level carries the style
  // width (the encoder adds those levels into the style code, spec renderer 3.5).
  auto ch = [&](int64_t res) { return res <= 8 ? S : shape.channels(res); };
  auto add = [&](const std::string& k, std::vector<int64_t> s, const char* init, float scale = 1.f) {
    w.add("lia." + k, std::move(s), init, scale);
  };
  add("enc.net_app.convs.0.0.weight", {ch(size), 3, 1, 1}, "randn");
  add("enc.net_app.convs.0.1.bias", {1, ch(size), 1, 1}, "zero");
  for (int r = 1; r <= L; ++r) {
    const int64_t cin = ch(size >> (r - 1)), cout = ch(size >> r);
    const std::string p = "enc.net_app.convs." + std::to_string(r) + ".";
    add(p + "conv1.0.weight", {cin, cin, 3, 3}, "randn");
    add(p + "conv1.1.bias", {1, cin, 1, 1}, "zero");
    add(p + "conv2.0.kernel", {4, 4}, "blur");
    add(p + "conv2.1.weight", {cout, cin, 3, 3}, "randn");
    add(p + "conv2.2.bias", {1, cout, 1, 1}, "zero");
    add(p + "skip.0.kernel", {4, 4}, "blur");
    add(p + "skip.1.weight", {cout, cin, 1, 1}, "randn");
  }
  add("enc.net_app.convs." + std::to_string(L + 1) + ".weight", {S, S, 4, 4}, "randn");
  for (int i = 0; i < 3; ++i) {
    add("enc.net_app.fc" + std::to_string(i + 1) + ".weight", {S, ch(size >> i)}, "randn");
    add("enc.net_app.fc" + std::to_string(i + 1) + ".bias", {S}, "zero");
  }
  add("enc.net_app.ws.weights", {L + 2}, "randn");
  for (const char* n : {"identity_excluded_net", "identity_net", "identity_net_density"})
    for (int i : {0, 2}) {
      add(std::string("enc.net_decouping.") + n + "." + std::to_string(i) + ".weight", {S, S}, "uniform", 0.044f);
      add(std::string("enc.net_decouping.") + n + "." + std::to_string(i) + ".bias", {S}, "uniform", 0.044f);
    }
  for (int i = 0; i < 5; ++i) {
    add("enc.fc." + std::to_string(i) + ".weight", {i < 4 ? S : M, S}, "randn");
    add("enc.fc." + std::to_string(i) + ".bias", {i < 4 ? S : M}, "zero");
  }
  add("dec.direction.weight", {S, M}, "randn");
  add("dec.input.input", {1, S, 4, 4}, "randn");
  add("dec.conv1.conv.weight", {1, ch(4), S, 3, 3}, "randn");
  add("dec.conv1.conv.modulation.weight", {S, S}, "randn");
  add("dec.conv1.conv.modulation.bias", {S}, "one");
  add("dec.conv1.noise.weight", {1}, "zero");
  add("dec.conv1.activate.bias", {1, ch(4), 1, 1}, "zero");
  for (int k = 0; k < 2 * L; ++k) {
    const int64_t r = 8LL << (k / 2);
    const int64_t cout = ch(r), cin = k % 2 == 0 ? ch(r / 2) : cout;
    const std::string p = "dec.convs." + std::to_string(k) + ".";
    add(p + "conv.weight", {1, cout, cin, 3, 3}, "randn");
    if (k % 2 == 0) add(p + "conv.blur.kernel", {4, 4}, "blur4");
    add(p + "conv.modulation.weight", {cin, S}, "randn");
    add(p + "conv.modulation.bias", {cin}, "one");
    add(p + "noise.weight", {1}, "zero");
    add(p + "activate.bias", {1, cout, 1, 1}, "zero");
  }
  for (int j = 0; j < L; ++j) {
    const int64_t c = ch(8LL << j);
    const std::string pr = "dec.to_rgbs." + std::to_string(j) + ".";
    add(pr + "conv.0.weight", {3, c, 1, 1}, "randn");
    add(pr + "conv.1.bias", {1, 3, 1, 1}, "zero");
    add(pr + "bias", {1, 3, 1, 1}, "zero");
    add(pr + "upsample.kernel", {4, 4}, "blur4");
    const std::string pf = "dec.to_flows." + std::to_string(j) + ".";
    add(pf + "conv.weight", {1, 3, c, 1, 1}, "randn", shape.flow_scale);
    add(pf + "conv.modulation.weight", {c, S}, "randn");
    add(pf + "conv.modulation.bias", {c}, "one");
    add(pf + "bias", {1, 3, 1, 1}, "zero");
    add(pf + "upsample.kernel", {4, 4}, "blur4");
  }
  w.write(path);
}

size_t write_stage2(const std::string& path, anitalker::motion::Variant v) {
  return write_stage2(path, v, Stage2Shape());
}

size_t write_stage2(const std::string& path, anitalker::motion::Variant v, const Stage2Shape& shape) {
  using anitalker::motion::Variant;
  RandomCheckpoint w;
  const bool hubert = v == Variant::HubertAudioOnly || v == Variant::HubertPoseOnly || v == Variant::HubertFullControl;
  const bool pose = v != Variant::HubertAudioOnly;
  const bool loc = v == Variant::HubertFullControl || v == Variant::MfccFullControl;
  const int64_t L = shape.layers, H = shape.hubert, S = shape.speech, P = shape.proj, D = S + 4 * P, M = shape.motion,
                start = shape.start, hid = shape.lstm, mid = shape.mfcc_mid, K = 13;
  auto lin = [&](const std::string& p, int64_t out, int64_t in, bool bias = true) {
    const float b = 1.f / std::sqrt(static_cast<float>(in));
    w.add(p + ".weight", {out, in}, "uniform", b);
    if (bias) w.add(p + ".bias", {out}, "uniform", b);
  };
  auto conv = [&](const std::string& p, int64_t out, int64_t in, int64_t k) {
    const float b = 1.f / std::sqrt(static_cast<float>(in * k));
    w.add(p + ".weight", {out, in, k}, "uniform", b);
    w.add(p + ".bias", {out}, "uniform", b);
  };
  auto norm = [&](const std::string& p, int64_t d) {
    w.add(p + ".weight", {d}, "one");
    w.add(p + ".bias", {d}, "zero");
  };
  // espnet's conformer block, keys in registration order (spec 2).
  auto conformer = [&](const std::string& p, int64_t d, int blocks) {
    for (int i = 0; i < blocks; ++i) {
      const std::string b = p + ".encoders." + std::to_string(i) + ".";
      const float xavier = std::sqrt(6.f / static_cast<float>(2 + d / 2));
      w.add(b + "self_attn.pos_bias_u", {2, d / 2}, "uniform", xavier);
      w.add(b + "self_attn.pos_bias_v", {2, d / 2}, "uniform", xavier);
      for (const char* l : {"linear_q", "linear_k", "linear_v", "linear_out"}) lin(b + "self_attn." + l, d, d);
      lin(b + "self_attn.linear_pos", d, d, false);
      for (const char* f : {"feed_forward", "feed_forward_macaron"}) {
        lin(b + f + ".w_1", d, d);
        lin(b + f + ".w_2", d, d);
      }
      conv(b + "conv_module.pointwise_conv1", 2 * d, d, 1);
      conv(b + "conv_module.depthwise_conv", d, 1, K);
      norm(b + "conv_module.norm", d);
      w.add(b + "conv_module.norm.running_mean", {d}, "zero");
      w.add(b + "conv_module.norm.running_var", {d}, "one");
      w.add_int64(b + "conv_module.norm.num_batches_tracked", 0);
      conv(b + "conv_module.pointwise_conv2", d, d, 1);
      for (const char* n : {"norm_ff", "norm_mha", "norm_ff_macaron", "norm_conv", "norm_final"}) norm(b + n, d);
    }
  };
  auto lstm = [&](const std::string& p, int64_t in, int64_t out) {
    const float b = 1.f / std::sqrt(static_cast<float>(hid));
    for (int k = 0; k < 2; ++k) {
      const std::string s = std::to_string(k);
      w.add(p + ".lstm.weight_ih_l" + s, {4 * hid, k ? hid : in}, "uniform", b);
      w.add(p + ".lstm.weight_hh_l" + s, {4 * hid, hid}, "uniform", b);
      w.add(p + ".lstm.bias_ih_l" + s, {4 * hid}, "uniform", b);
      w.add(p + ".lstm.bias_hh_l" + s, {4 * hid}, "uniform", b);
    }
    lin(p + ".fc", out, hid);
  };
  w.add("x_T", shape.x_T, "uniform", 1.f);  // not read: only its size counts (seed replay)
  const size_t first = w.tensors.size();
  if (hubert) {
    w.add("weights", {L}, "zero");
    conv("down_sample1", S, H, 3);
    conformer("speech_encoder", S, 4);
  } else {
    conv("down_sample1", mid, 39, 3);
    conv("down_sample2", S, mid, 3);
  }
  conformer("coarse_decoder", D, 2);
  if (pose) {
    lstm("pose_predictor", S, 3);
    lstm("pose_encoder", 3, S);
  }
  if (loc) {
    lstm("location_predictor", S, 1);
    lstm("location_encoder", 1, S);
    lstm("face_scale_predictor", S, 1);
    lstm("face_scale_encoder", 1, S);
  }
  lin("init_code_proj.0", P, start);
  lin("noisy_encoder.0", P, M);
  lin("t_encoder.0", P, 1);
  lin("encoder_direction_code", P, M);
  lin("out_proj", M, D);
  // model.* and ema_model.*: the same memory under both prefixes.
  std::vector<anitalker::TensorToWrite> all(w.tensors.begin(), w.tensors.begin() + first);
  for (const char* prefix : {"model.", "ema_model."})
    for (size_t i = first; i < w.tensors.size(); ++i) {
      anitalker::TensorToWrite t = w.tensors[i];
      t.key = prefix + t.key;
      all.push_back(t);
    }
  anitalker::write_checkpoint(path, all);
  return all.size();
}


void remove_tree(const std::string& path) {
  // nftw, not std::filesystem: PyTorch's wheels export std::filesystem
  // symbols of their own from libtorch.so, and a binary linked against them
  // can bind to those and crash.
  ::nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p); }, 16, FTW_DEPTH | FTW_PHYS);
}

std::string temp_path(const char* stem) {
  std::string tmpl = std::string("/tmp/anitalker-") + stem + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const int fd = mkstemp(buf.data());
  if (fd < 0) throw std::runtime_error("cannot create a temporary file");
  ::close(fd);
  ::unlink(buf.data());
  return std::string(buf.data());
}

namespace {

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
}  // namespace

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

}  // namespace bench
