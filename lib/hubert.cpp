// HuBERT forward pass (spec/audio-features.md 1.1-1.8).
#include "hubert.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sys/stat.h>

#include "checkpoint.h"
#include "error.h"
#include "kernels.h"
#include "model_cache.h"
#include "state_dict.h"
#include "weights.h"
#include "tensor_data.h"

namespace anitalker::hubert {

namespace {

struct Linear {  // run by cm_linear() below, or packed time-major
  at::Tensor w, b;
  at::Tensor w16 = {};  // Precision::Bf16: w in bfloat16 (made after the weights are placed, not walked)
  PackedLinear packed = {};  // the time-major transformer's (made after placing, not walked)
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};
struct Norm {
  at::Tensor w, b;
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};

// The transformer runs channel-major: activations [C, T].  A linear layer
// is then a 1x1 convolution of (1, C, 1, T) in NCHW, the layout LibTorch
// 1.13's oneDNN path takes and gives: no copies (over time-major rows it
// reordered its input and the output came back transposed, two copies a
// layer, about 11% of a pass).  w16: the bfloat16 weights, or undefined.
at::Tensor cm_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& w16, const at::Tensor& b) {
  const int64_t in = w.size(1), out = w.size(0), T = x.size(1);
  const std::array<int64_t, 2> one{1, 1}, none{0, 0};
  if (w16.defined()) {
    const at::Tensor x16 = x.to(at::kBFloat16).view({1, in, 1, T});
    const at::Tensor y = dnn_conv(x16, w16.view({out, in, 1, 1}), at::Tensor(), one, none).view({out, T}).to(x.scalar_type());
    return b.defined() ? y.add_(b.view({out, 1})) : y;
  }
  return dnn_conv(x.view({1, in, 1, T}), w.view({out, in, 1, 1}), b, one, none).view({out, T});
}

// LayerNorm over the channels of [C, T] (each frame's column), two-pass:
// the column means and then the mean squared deviations as products with a
// row of 1/C (LibTorch 1.13's var_mean over the first dimension ran at a
// fraction of the memory's speed: 3 ms for 1024 x 520).
//
// On the CPU in float32 the column means are sums down the rows, each
// column added in the same order whatever the number of columns: a frame's
// norm then has the same bits in a piece of audio as in the whole clip
// (conv_features), which a BLAS product does not promise (OpenBLAS's
// Cooperlake kernels, taken on AVX-512 CPUs without OPENBLAS_CORETYPE,
// gave other bits for other widths: up to 1.1e-6 apart).
at::Tensor column_means(const at::Tensor& x) {
  const int64_t C = x.size(0), T = x.size(1);
  if (x.device().is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous()) {
    at::Tensor out = at::zeros({1, T}, x.options());
    float* o = out.data_ptr<float>();
    const float* p = x.data_ptr<float>();
    const float inv = static_cast<float>(1.0 / static_cast<double>(C));
    at::parallel_for(0, T, 1024, [&](int64_t b, int64_t e) {
      for (int64_t c = 0; c < C; ++c) {
        const float* row = p + c * T;
        for (int64_t t = b; t < e; ++t) o[t] += row[t];
      }
      for (int64_t t = b; t < e; ++t) o[t] *= inv;
    });
    return out;
  }
  return at::mm(at::full({1, C}, 1.0 / static_cast<double>(C), x.options()), x);
}

at::Tensor cm_layer_norm(const at::Tensor& x, const Norm& n, double eps) {
  at::Tensor y = x - column_means(x);                                  // x - mean, [C, T]
  const at::Tensor rstd = column_means(y * y).add_(eps).rsqrt_();      // [1, T]
  return y.mul_(rstd).mul_(n.w.view({-1, 1})).add_(n.b.view({-1, 1}));
}

// Frames of the conv encoder's pieces of long audio (Model::conv_features):
// 100 (2 s: the first layer's output 13 MB); ANITALKER_HUBERT_CONV_PIECE
// for tests and measurements, 0 = the whole clip at once (read at each
// call: once per clip).
int64_t conv_piece_frames() {
  const char* e = std::getenv("ANITALKER_HUBERT_CONV_PIECE");
  return e && *e ? std::max<int64_t>(0, std::strtoll(e, nullptr, 10)) : int64_t{100};
}

// LayerNorm over each row of time-major [T, C].
at::Tensor ln_rows(const at::Tensor& x, const Norm& n, double eps) { return at::layer_norm(x, {x.size(1)}, n.w, n.b, eps); }

// The time-major attention takes all heads at once up to this many scores
// (nh x T x T floats: 2 MB, T = 181 with 16 heads), one head at a time above.
constexpr int64_t kAllHeadsScores = 512 * 1024;

}  // namespace

struct Model::Weights {
  std::vector<at::Tensor> conv_w4, conv_b;  // kernels as (Cout, Cin, 1, k), biases
  std::vector<Norm> conv_norm;  // every layer ("layer") or layer 0 only ("group")
  Norm proj_norm;
  Linear proj;
  at::Tensor pos_w, pos_b;  // effective weight-normed kernel [H, H/G, K]
  // Time-major: pos_w as (H, H/G, 1, K), packed once (made after placing, not
  // walked); LibTorch's grouped convolution reordered its 128-tap kernel, 32
  // MB at the released size, at every call.
  PackedConv pos_packed;
  struct Layer {
    Norm ln, final_ln;
    at::Tensor qkv_w, qkv_b;  // q, k, v stacked: [3H, H]
    at::Tensor qkv_w16;       // Precision::Bf16 (not walked)
    PackedLinear qkv_packed;  // the time-major transformer's (not walked)
    Linear out, ff1, ff2;
    template <class F>
    void each(F& f) {
      visit_all(f, ln, final_ln, qkv_w, qkv_b, out, ff1, ff2);
    }
  };
  std::vector<Layer> layers;
  Norm enc_ln;
  // The projection and the transformer run time-major with every linear
  // layer packed (PackedLinear: CPU, float32 or bfloat16, a build with
  // oneDNN's headers); else channel-major as cm_linear() says.
  bool time_major = false;
  template <class F>
  void each(F& f) {
    visit_all(f, conv_w4, conv_b, conv_norm, proj_norm, proj, pos_w, pos_b, layers, enc_ln);
  }
};

Model::Model(const Config& config, const StateDict& all, c10::Device device, at::ScalarType dtype, Precision precision)
    : cfg_(config), device_(device), dtype_(dtype), precision_(precision) {
  check_precision(precision, device, "precision", {Precision::Fp32, Precision::Bf16}, "HuBERT");
  // A task-head model (HubertForCTC, ...) prefixes the bare model's keys.
  const StateDict sd = all.sub(!all.has("feature_projection.projection.weight") && all.has("hubert.feature_projection.projection.weight") ? "hubert." : "");
  auto w = std::make_shared<Weights>();
  const int64_t H = cfg_.hidden;
  int64_t cin = 1;
  for (size_t i = 0; i < cfg_.conv_dim.size(); ++i) {
    const std::string p = "feature_extractor.conv_layers." + std::to_string(i) + ".";
    const int64_t cout = cfg_.conv_dim[i];
    at::Tensor cw = sd.get_float(p + "conv.weight", {cout, cin, cfg_.conv_kernel[i]});
    w->conv_w4.push_back(cw.unsqueeze(2).contiguous());
    w->conv_b.push_back(cfg_.conv_bias ? sd.get_float(p + "conv.bias", {cout}) : at::Tensor());
    if (cfg_.feat_extract_norm == "layer" || i == 0)
      w->conv_norm.push_back({sd.get_float(p + "layer_norm.weight", {cout}), sd.get_float(p + "layer_norm.bias", {cout})});
    cin = cout;
  }
  w->proj_norm = {sd.get_float("feature_projection.layer_norm.weight", {cin}), sd.get_float("feature_projection.layer_norm.bias", {cin})};
  w->proj = {sd.get_float("feature_projection.projection.weight", {H, cin}), sd.get_float("feature_projection.projection.bias", {H})};

  // Weight norm over every dim but the kernel axis (dim 2): one norm per tap (spec 1.4).
  const std::string pc = "encoder.pos_conv_embed.conv.";
  const bool old_names = sd.has(pc + "weight_g");
  const int64_t K = cfg_.pos_kernel, G = cfg_.pos_groups;
  at::Tensor g = sd.get_float(pc + (old_names ? "weight_g" : "parametrizations.weight.original0"), {1, 1, K});
  at::Tensor v = sd.get_float(pc + (old_names ? "weight_v" : "parametrizations.weight.original1"), {H, H / G, K});
  w->pos_w = (g * v / v.pow(2).sum(at::IntArrayRef{0, 1}, true).sqrt()).contiguous();
  w->pos_b = sd.get_float(pc + "bias", {H});

  // Time-major with packed layers on the CPU; channel-major as a GPU runs
  // it elsewhere (and with ANITALKER_GENERIC=1, device.h generic_path).
  const bool pack = device_.is_cpu() && dtype_ == at::kFloat && PackedLinear::available() && !generic_path(device_);
  // Each layer's q, k and v weights (views of the checkpoint): stacked as
  // qkv_w where the plain weights are used, packed from one reused buffer
  // where they are not (a stacked copy per layer was 288 MB of fresh
  // memory at full size, each page zeroed on first touch).
  std::vector<std::array<at::Tensor, 3>> qkv_parts;
  for (int l = 0; l < cfg_.layers; ++l) {
    const std::string p = "encoder.layers." + std::to_string(l) + ".";
    Weights::Layer L;
    L.ln = {sd.get_float(p + "layer_norm.weight", {H}), sd.get_float(p + "layer_norm.bias", {H})};
    L.final_ln = {sd.get_float(p + "final_layer_norm.weight", {H}), sd.get_float(p + "final_layer_norm.bias", {H})};
    const std::string a = p + "attention.";
    qkv_parts.push_back({sd.get_float(a + "q_proj.weight", {H, H}), sd.get_float(a + "k_proj.weight", {H, H}),
                         sd.get_float(a + "v_proj.weight", {H, H})});
    if (!pack) L.qkv_w = at::cat({qkv_parts.back()[0], qkv_parts.back()[1], qkv_parts.back()[2]}, 0);
    L.qkv_b = at::cat({sd.get_float(a + "q_proj.bias", {H}), sd.get_float(a + "k_proj.bias", {H}), sd.get_float(a + "v_proj.bias", {H})}, 0);
    L.out = {sd.get_float(a + "out_proj.weight", {H, H}), sd.get_float(a + "out_proj.bias", {H})};
    const int64_t F = cfg_.intermediate;
    L.ff1 = {sd.get_float(p + "feed_forward.intermediate_dense.weight", {F, H}), sd.get_float(p + "feed_forward.intermediate_dense.bias", {F})};
    L.ff2 = {sd.get_float(p + "feed_forward.output_dense.weight", {H, F}), sd.get_float(p + "feed_forward.output_dense.bias", {H})};
    w->layers.push_back(std::move(L));
  }
  w->enc_ln = {sd.get_float("encoder.layer_norm.weight", {H}), sd.get_float("encoder.layer_norm.bias", {H})};

  place_weights(*w, device_, dtype_);
  if (pack) {
    const bool bf16 = precision_ == Precision::Bf16;
    // The projection stays float32, as on the channel-major path.
    w->proj.packed = PackedLinear(w->proj.w, w->proj.b);
    w->time_major = w->proj.packed.usable();
    at::Tensor qkv_w = at::empty({3 * H, H}, at::kFloat);
    for (size_t i = 0; i < w->layers.size(); ++i) {
      Weights::Layer& l = w->layers[i];
      // q's rows pre-scaled by 1/sqrt(head size), as the time-major path
      // takes them (exact where that is a power of two: 1/8 released).
      const double scale = 1.0 / std::sqrt(static_cast<double>(H / cfg_.heads));
      qkv_w.narrow(0, 0, H).copy_(qkv_parts[i][0]).mul_(scale);
      qkv_w.narrow(0, H, H).copy_(qkv_parts[i][1]);
      qkv_w.narrow(0, 2 * H, H).copy_(qkv_parts[i][2]);
      at::Tensor qkv_b = l.qkv_b.clone();
      qkv_b.narrow(0, 0, H).mul_(scale);
      l.qkv_packed = PackedLinear(qkv_w, qkv_b, bf16);
      w->time_major = w->time_major && l.qkv_packed.usable();
      for (Linear* lin : {&l.out, &l.ff1, &l.ff2}) {
        // ff1's GELU inside its product's pass.
        lin->packed = PackedLinear(lin->w, lin->b, bf16, lin == &l.ff1 ? PackedLinear::Act::Gelu : PackedLinear::Act::None);
        w->time_major = w->time_major && lin->packed.usable();
      }
    }
    // Time-major, the packed copies are the only ones used: the plain
    // weights go (they are the checkpoint's mapping, whose pages are then
    // no longer read).
    if (w->time_major) {
      w->pos_packed = PackedConv(w->pos_w.unsqueeze(2), at::IntArrayRef{1, 1}, false, cfg_.pos_groups);
      w->proj.w = at::Tensor();
      for (Weights::Layer& l : w->layers)
        for (Linear* lin : {&l.out, &l.ff1, &l.ff2}) lin->w = at::Tensor();
    } else {
      // A layer oneDNN would not pack: the plain path for all of them.
      for (size_t i = 0; i < w->layers.size(); ++i)
        w->layers[i].qkv_w = at::cat({qkv_parts[i][0], qkv_parts[i][1], qkv_parts[i][2]}, 0);
    }
  }
  if (precision_ == Precision::Bf16 && !w->time_major)
    for (Weights::Layer& l : w->layers) {
      l.qkv_w16 = l.qkv_w.to(at::kBFloat16);
      for (Linear* lin : {&l.out, &l.ff1, &l.ff2}) lin->w16 = lin->w.to(at::kBFloat16);
    }
  w_ = w;
}

std::shared_ptr<const Model> Model::load(const std::string& dir, c10::Device device, Precision precision) {
  return shared_model<Model>(dir, device, [&] {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0)
      throw Error(Error::Kind::NotFound, dir + ": no such folder (expected a HuBERT folder with config.json and pytorch_model.bin)");
    if (!S_ISDIR(st.st_mode))
      throw Error(Error::Kind::Usage, dir + ": not a folder (expected a HuBERT folder with config.json and pytorch_model.bin)");
    const Config cfg = read_config(dir + "/config.json");
    std::string weights = dir + "/pytorch_model.bin";
    if (::stat(weights.c_str(), &st) != 0 && ::stat((dir + "/model.safetensors").c_str(), &st) == 0) weights = dir + "/model.safetensors";
    return std::make_shared<const Model>(cfg, StateDict(Checkpoint::open(weights)), device, at::kFloat, precision);
  }, precision_name(precision));
}

at::Tensor Model::normalize(const at::Tensor& wave) {
  at::Tensor x = wave.to(at::kDouble);
  at::Tensor mu = x.mean();
  at::Tensor var = (x - mu).pow(2).mean();
  return ((x - mu) / (var + 1e-7).sqrt()).to(at::kFloat);
}

namespace {

void check_wave(const Config& cfg, const at::Tensor& wave) {
  if (wave.dim() != 1) throw Error(Error::Kind::Usage, "hubert: expected a 1-D waveform, got " + c10::str(wave.sizes()));
  if (frame_count(cfg, wave.size(0)) < 1)
    throw Error(Error::Kind::Usage, "hubert: " + std::to_string(wave.size(0)) + " samples are too short for one feature frame (" +
                                        "at least " + std::to_string(receptive_field(cfg)) + " samples are needed)");
}

// The last n rows of a (rows of b appended to a), a possibly undefined.
at::Tensor last_rows(const at::Tensor& a, const at::Tensor& b, int64_t n) {
  const at::Tensor all = a.defined() && a.size(0) > 0 ? at::cat({a, b}, 0) : b;
  return all.narrow(0, std::max<int64_t>(0, all.size(0) - n), std::min<int64_t>(n, all.size(0))).clone();
}

}  // namespace

// Conv encoder, channel-major like the transformer: each layer a
// convolution of (1, Cin, 1, N) in NCHW with the kernel (Cout, Cin, 1, k)
// at stride (1, st), oneDNN's own layout in and out; the layer norms over
// each frame's channels.
at::Tensor Model::conv_features(const at::Tensor& normalized) const {
  // With per-frame layer norms ("layer") a frame depends only on its own
  // receptive field, and a piece of audio that starts at a multiple of the
  // total stride gives exactly its frames: long audio goes through in
  // pieces of conv_piece_frames() frames.  The whole clip at once made
  // each layer's outputs new tensors as long as the clip (the first
  // layer's 512 channels at 3.2 kHz: 68 MB for 10 s, 790 MB for 120 s, and
  // its norm and GELU as much again), which the process then kept; pieces
  // of 2 s reuse the same few MB.  The same bits (test hubert).
  const int64_t piece = conv_piece_frames();
  if (cfg_.feat_extract_norm == "layer" && piece > 0 && normalized.dim() == 1) {
    const int64_t N = normalized.size(0), T = frame_count(cfg_, N);
    if (T > piece) {
      int64_t stride = 1;
      for (int64_t s : cfg_.conv_stride) stride *= s;
      const int64_t rf = receptive_field(cfg_);
      std::vector<at::Tensor> pieces;
      for (int64_t a = 0; a < T; a += piece) {
        const int64_t n = std::min(piece, T - a);
        pieces.push_back(conv_layers(normalized.narrow(0, a * stride, (n - 1) * stride + rf)));
      }
      return at::cat(pieces, 1);
    }
  }
  return conv_layers(normalized);
}

at::Tensor Model::conv_layers(const at::Tensor& normalized) const {
  const Weights& w = *w_;
  at::Tensor cur = normalized.to(device_, dtype_).view({1, -1});  // [1, N]
  for (size_t i = 0; i < w.conv_w4.size(); ++i) {
    const int64_t st = cfg_.conv_stride[i], cin = cur.size(0), n = cur.size(1), cout = w.conv_w4[i].size(0);
    const at::Tensor x4 = cur.view({1, cin, 1, n});
    const at::Tensor y = dnn_conv(x4, w.conv_w4[i], w.conv_b[i], at::IntArrayRef{1, st}, at::IntArrayRef{0, 0});
    cur = y.view({cout, -1});
    if (cfg_.feat_extract_norm == "layer") {
      // The conv layers' norms use PyTorch's default eps 1e-5 whatever the
      // config says (spec 1.2).
      cur = cm_layer_norm(cur, w.conv_norm[i], 1e-5);
    } else if (i == 0) {
      cur = at::group_norm(cur.unsqueeze(0), cout, w.conv_norm[0].w, w.conv_norm[0].b, 1e-5)[0];
    }
    cur = at::gelu(cur);
  }
  return cur;  // [C, T]
}

at::Tensor Model::positional(const at::Tensor& x, int64_t first) const {
  const Weights& w = *w_;
  const int64_t H = cfg_.hidden, K = cfg_.pos_kernel, rows = x.size(0), T = rows - first;
  if (w.pos_packed.usable()) {
    // The rows [rows, H] are (1, H, 1, rows) channels-last, in and out: no copies.
    const at::Tensor y = w.pos_packed(x.view({1, 1, rows, H}).permute({0, 3, 1, 2}), 0, K / 2);  // (1, H, 1, rows')
    return at::gelu(y.permute({0, 2, 3, 1}).reshape({-1, H}).narrow(0, first, T) + w.pos_b);
  }
  const at::Tensor y = at::conv1d(x.t().unsqueeze(0), w.pos_w, w.pos_b, 1, K / 2, 1, cfg_.pos_groups);
  return at::gelu(y.narrow(2, first, T))[0].t();  // [T, H]
}

at::Tensor Model::hidden_states(const at::Tensor& wave, Taps* taps, const std::function<void()>& before_layer) const {
  const Weights& w = *w_;
  check_wave(cfg_, wave);
  const int64_t T = frame_count(cfg_, wave.size(0));
  at::NoGradGuard no_grad;
  const double eps = cfg_.layer_norm_eps;
  const at::Tensor feats = conv_features(normalize(wave));  // [C, T]
  if (taps) taps->conv = feats.t().contiguous().cpu();
  if (w.time_major) {
    // Time-major rows [T, C] from here, every linear layer packed
    // (Weights::time_major): the channel-major path's sums up to float32
    // rounding order, the layer norms over contiguous rows.
    const int64_t H = cfg_.hidden, nh = cfg_.heads, hd = H / nh;
    const auto ln = [eps](const at::Tensor& x, const Norm& n) { return ln_rows(x, n, eps); };
    at::Tensor h = w.proj.packed(ln(feats.t().contiguous(), w.proj_norm));  // [T, H]
    if (taps) taps->projected = h.cpu();
    const at::Tensor pc = positional(h, 0);
    if (taps) taps->pos_conv = pc.contiguous().cpu();
    h = h + pc;

    // ANITALKER_HUBERT_DNN_ATTENTION=0: LibTorch's products instead of
    // attend_heads() (for tests and measurements).
    const char* knob = std::getenv("ANITALKER_HUBERT_DNN_ATTENTION");
    const bool dnn_attention = !(knob && std::string(knob) == "0");
    // Each state goes into the result as it is made: a list of the states
    // and a stacked copy of them were the pass's largest memory on long
    // audio (25 x T x H floats each: 0.6 GB apiece at 115 s).
    const int64_t layers = static_cast<int64_t>(w.layers.size());
    at::Tensor states = at::empty({layers + 1, T, H}, h.options());
    states[0].copy_(h);
    for (size_t l = 0; l < w.layers.size(); ++l) {
      if (before_layer) before_layer();
      const Weights::Layer& L = w.layers[l];
      const at::Tensor qkv = L.qkv_packed(ln(h, L.ln));  // [T, 3H], q scaled
      at::Tensor o = dnn_attention ? attend_heads(qkv, nh, kAllHeadsScores) : at::Tensor();
      if (o.defined()) {
      } else if (nh * T * T <= kAllHeadsScores) {
        // Short windows (the streaming hops): all heads in one batched
        // product and one softmax; per head, 3 x 16 small calls a layer
        // cost more than their arithmetic.
        const at::Tensor q = qkv.narrow(1, 0, H).view({T, nh, hd}).transpose(0, 1);  // [nh, T, hd]
        const at::Tensor k = qkv.narrow(1, H, H).view({T, nh, hd}).transpose(0, 1);
        const at::Tensor v = qkv.narrow(1, 2 * H, H).view({T, nh, hd}).transpose(0, 1);
        at::Tensor att = at::bmm(q, k.transpose(1, 2));  // [nh, T, T]
        at::softmax_out(att, att, -1);
        o = at::bmm(att, v).transpose(0, 1).reshape({T, H});
      } else {
        // Head i's q, k, v: [T, hd] column blocks of qkv; its output the
        // same block of o, written in place.  One head's [T, T] scores stay
        // in cache; all heads' at once would not.
        o = at::empty({T, H}, h.options());
        for (int64_t i = 0; i < nh; ++i) {
          const at::Tensor q = qkv.narrow(1, i * hd, hd), k = qkv.narrow(1, H + i * hd, hd),
                           v = qkv.narrow(1, 2 * H + i * hd, hd);
          at::Tensor att = at::mm(q, k.t());  // [T, T]
          at::softmax_out(att, att, -1);
          at::Tensor oi = o.narrow(1, i * hd, hd);
          at::mm_out(oi, att, v);
        }
      }
      // The residual sums inside the products' passes (a new h: the states keep the old).
      h = L.out.packed(o, h);
      h = L.ff2.packed(L.ff1.packed(ln(h, L.final_ln)), h);
      // States 1..L-1 are the raw residual stream; the last gets the final LN (spec 1.6).
      states[static_cast<int64_t>(l) + 1].copy_(l + 1 < w.layers.size() ? h : ln(h, w.enc_ln));
    }
    return states.cpu();  // [states, T, H]
  }
  // Projection (spec 1.3), channel-major from here: [H, T].
  at::Tensor h = cm_linear(cm_layer_norm(feats, w.proj_norm, eps), w.proj.w, w.proj.w16, w.proj.b);
  if (taps) taps->projected = h.t().contiguous().cpu();
  // Positional conv: pad K/2 both sides, drop the last frame when K is even (spec 1.4).
  const int64_t K = cfg_.pos_kernel;
  at::Tensor pc = at::conv1d(h.unsqueeze(0), w.pos_w, w.pos_b, 1, K / 2, 1, cfg_.pos_groups);
  if (K % 2 == 0) pc = pc.slice(2, 0, pc.size(2) - 1);
  pc = at::gelu(pc)[0];  // [H, T]
  if (taps) taps->pos_conv = pc.t().contiguous().cpu();
  h = h + pc;

  // Transformer, pre-LN (spec 1.5), channel-major.
  const int64_t H = cfg_.hidden, nh = cfg_.heads, hd = H / nh;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<at::Tensor> states{h};
  for (size_t l = 0; l < w.layers.size(); ++l) {
    if (before_layer) before_layer();
    const Weights::Layer& L = w.layers[l];
    const at::Tensor qkv = cm_linear(cm_layer_norm(h, L.ln, eps), L.qkv_w, L.qkv_w16, L.qkv_b);  // [3H, T]
    // q, k, v as [nh, hd, T]: views.
    const at::Tensor q = qkv.narrow(0, 0, H).mul_(scale).view({nh, hd, T});
    const at::Tensor k = qkv.narrow(0, H, H).view({nh, hd, T}), v = qkv.narrow(0, 2 * H, H).view({nh, hd, T});
    // One head at a time: a head's [T, T] scores stay in cache, all heads'
    // at once (16 x T x T floats, 64 MB at 20 s) do not.
    at::Tensor o = at::empty({nh, hd, T}, h.options());
    for (int64_t i = 0; i < nh; ++i) {
      at::Tensor att = at::mm(q[i].t(), k[i]);  // [T, T]
      at::softmax_out(att, att, -1);
      at::Tensor oi = o[i];
      at::mm_out(oi, v[i], att.t());  // [hd, T]
    }
    h = h + cm_linear(o.view({H, T}), L.out.w, L.out.w16, L.out.b);
    const at::Tensor f = at::gelu(cm_linear(cm_layer_norm(h, L.final_ln, eps), L.ff1.w, L.ff1.w16, L.ff1.b));
    h = h + cm_linear(f, L.ff2.w, L.ff2.w16, L.ff2.b);
    // States 1..L-1 are the raw residual stream; the last gets the final LN (spec 1.6).
    states.push_back(l + 1 < w.layers.size() ? h : cm_layer_norm(h, w.enc_ln, eps));
  }
  // [states, H, T] -> [states, T, H]
  return at::stack(states, 0).transpose(1, 2).contiguous().cpu();
}

at::Tensor Model::hidden_states_cached(const at::Tensor& normalized, int64_t keep, int64_t context, Cache* cache) const {
  return hidden_states_cached(std::vector<CachedCall>{{normalized, keep, context, cache}}).front();
}

std::vector<at::Tensor> Model::hidden_states_cached(const std::vector<CachedCall>& calls) const {
  const Weights& w = *w_;
  at::NoGradGuard no_grad;
  const double eps = cfg_.layer_norm_eps;
  const int64_t H = cfg_.hidden, nh = cfg_.heads, hd = H / nh, K = cfg_.pos_kernel;
  const int64_t L = static_cast<int64_t>(w.layers.size());
  const size_t N = calls.size();
  for (const CachedCall& c : calls) {
    check_wave(cfg_, c.normalized);
    if (c.cache->frames() > 0 && static_cast<int64_t>(c.cache->k.size()) != L)
      throw Error(Error::Kind::Usage, "hubert: a cache of another model");
  }
  const auto ln = [eps](const at::Tensor& x, const Norm& n) { return ln_rows(x, n, eps); };
  // Time-major rows [T, .] throughout; the linear layers packed where the
  // weights are (Weights::time_major), else LibTorch's.
  const auto linear = [&](const Linear& lin, const at::Tensor& x) {
    if (w.time_major) return lin.packed(x);
    return lin.w16.defined() ? at::linear(x.to(at::kBFloat16), lin.w16).to(x.scalar_type()).add_(lin.b)
                             : at::linear(x, lin.w, lin.b);
  };
  // The calls' rows one after another: call i's are rows [at[i], at[i] + T[i]).
  const auto cat = [N](const std::vector<at::Tensor>& parts) { return N == 1 ? parts.front() : at::cat(parts, 0); };
  std::vector<at::Tensor> feats(N);
  std::vector<int64_t> T(N), at_row(N), keep(N);
  int64_t rows = 0;
  for (size_t i = 0; i < N; ++i) {
    feats[i] = conv_features(calls[i].normalized).t().contiguous();  // [T, C]
    T[i] = feats[i].size(0);
    at_row[i] = rows;
    rows += T[i];
    keep[i] = std::min(calls[i].keep, T[i]);
  }
  const at::Tensor projected = linear(w.proj, ln(cat(feats), w.proj_norm));  // [rows, H]

  // The positional convolution per call, over its cached rows and its own
  // (the output rows of its own: row i reads rows i - K/2 .. i + K/2 - 1).
  std::vector<at::Tensor> pcs(N);
  for (size_t i = 0; i < N; ++i) {
    const at::Tensor h = projected.narrow(0, at_row[i], T[i]);
    const at::Tensor& cpos = calls[i].cache->pos;
    const int64_t P = cpos.defined() ? cpos.size(0) : 0;
    pcs[i] = positional(P > 0 ? at::cat({cpos, h}, 0) : h.contiguous(), P);
  }
  at::Tensor h = projected + cat(pcs);

  std::vector<std::vector<at::Tensor>> states(N);
  for (size_t i = 0; i < N; ++i) states[i].push_back(h.narrow(0, at_row[i], T[i]));
  std::vector<std::vector<at::Tensor>> new_k(N, std::vector<at::Tensor>(L)), new_v(N, std::vector<at::Tensor>(L));
  for (int64_t l = 0; l < L; ++l) {
    const Weights::Layer& Ly = w.layers[l];
    at::Tensor qkv;
    if (w.time_major) {
      qkv = Ly.qkv_packed(ln(h, Ly.ln));  // q pre-scaled
    } else {
      const at::Tensor y = ln(h, Ly.ln);
      qkv = Ly.qkv_w16.defined() ? at::linear(y.to(at::kBFloat16), Ly.qkv_w16).to(y.scalar_type()).add_(Ly.qkv_b)
                                 : at::linear(y, Ly.qkv_w, Ly.qkv_b);
      qkv.narrow(1, 0, H).mul_(1.0 / std::sqrt(static_cast<double>(hd)));
    }
    // Attention per call: its rows' queries against its cached keys and its own.
    std::vector<at::Tensor> os(N);
    for (size_t i = 0; i < N; ++i) {
      const Cache& c = *calls[i].cache;
      const at::Tensor rows_i = qkv.narrow(0, at_row[i], T[i]);
      const at::Tensor q = rows_i.narrow(1, 0, H), k = rows_i.narrow(1, H, H), v = rows_i.narrow(1, 2 * H, H);
      const bool cached = c.frames() > 0;
      const at::Tensor keys = cached ? at::cat({c.k[l], k}, 0) : k;  // [C + T, H]
      const at::Tensor values = cached ? at::cat({c.v[l], v}, 0) : v;
      const int64_t S = keys.size(0);
      at::Tensor att = at::bmm(q.reshape({T[i], nh, hd}).transpose(0, 1), keys.reshape({S, nh, hd}).permute({1, 2, 0}));
      at::softmax_out(att, att, -1);  // [nh, T, S]
      os[i] = at::bmm(att, values.reshape({S, nh, hd}).transpose(0, 1)).transpose(0, 1).reshape({T[i], H});
      new_k[i][l] = last_rows(cached ? c.k[l] : at::Tensor(), k.narrow(0, 0, keep[i]), calls[i].context);
      new_v[i][l] = last_rows(cached ? c.v[l] : at::Tensor(), v.narrow(0, 0, keep[i]), calls[i].context);
    }
    const at::Tensor o = cat(os);
    if (w.time_major) {
      h = Ly.out.packed(o, h);
      h = Ly.ff2.packed(Ly.ff1.packed(ln(h, Ly.final_ln)), h);
    } else {
      h = h + linear(Ly.out, o);
      h = h + linear(Ly.ff2, at::gelu(linear(Ly.ff1, ln(h, Ly.final_ln))));
    }
    const at::Tensor state = l + 1 < L ? h : ln(h, w.enc_ln);
    for (size_t i = 0; i < N; ++i) states[i].push_back(state.narrow(0, at_row[i], T[i]));
  }
  // The frames kept join each cache: the last `context` of them, and of their
  // positional-convolution rows as many as a row reads on its left.
  std::vector<at::Tensor> out(N);
  for (size_t i = 0; i < N; ++i) {
    Cache& c = *calls[i].cache;
    c.k = std::move(new_k[i]);
    c.v = std::move(new_v[i]);
    c.pos = last_rows(c.pos, projected.narrow(0, at_row[i], keep[i]), std::min(calls[i].context, K / 2));
    if (calls[i].context == 0) c.clear();
    out[i] = at::stack(states[i], 0).cpu();  // [states, T, H]
  }
  return out;
}

bool Model::rows_independent() const {
  std::call_once(rows_once_, [this] {
    // The first layer's work on 7 rows, alone and after 23 others.
    const Weights& w = *w_;
    const Weights::Layer& L = w.layers.front();
    const int64_t H = cfg_.hidden;
    // Its own generator: the process's stream of random numbers stays as it was.
    const at::Tensor all = at::randn({30, H}, at::detail::createCPUGenerator(1234), at::kFloat).to(device_, dtype_);
    const auto layer = [&](const at::Tensor& x) {
      const auto ln = [&](const at::Tensor& y, const Norm& n) { return ln_rows(y, n, cfg_.layer_norm_eps); };
      std::vector<at::Tensor> out;
      if (w.time_major) {
        out.push_back(L.qkv_packed(ln(x, L.ln)));
        const at::Tensor h = L.out.packed(out.back().narrow(1, 0, H).contiguous(), x);
        out.push_back(L.ff2.packed(L.ff1.packed(ln(h, L.final_ln)), h));
      } else {
        out.push_back(at::linear(ln(x, L.ln), L.qkv_w, L.qkv_b));
        out.push_back(at::gelu(at::linear(ln(x, L.final_ln), L.ff1.w, L.ff1.b)));
      }
      return out;
    };
    std::vector<at::Tensor> alone = layer(all.narrow(0, 23, 7).contiguous()), among = layer(all);
    // And the projection of the conv features.
    const int64_t C = cfg_.conv_dim.back();
    const at::Tensor feats = at::randn({30, C}, at::detail::createCPUGenerator(4321), at::kFloat).to(device_, dtype_);
    const auto project = [&](const at::Tensor& f) {
      const at::Tensor y = at::layer_norm(f, {C}, w.proj_norm.w, w.proj_norm.b, cfg_.layer_norm_eps);
      return w.time_major ? w.proj.packed(y) : at::linear(y, w.proj.w, w.proj.b);
    };
    alone.push_back(project(feats.narrow(0, 23, 7).contiguous()));
    among.push_back(project(feats));
    rows_independent_ = true;
    for (size_t i = 0; i < alone.size(); ++i)
      rows_independent_ = rows_independent_ && at::equal(alone[i], among[i].narrow(0, 23, 7));
  });
  return rows_independent_;
}

std::shared_ptr<WindowBatcher> shared_windows(std::shared_ptr<const Model> model, size_t max_batch,
                                              std::chrono::microseconds max_delay) {
  const Model* key = model.get();
  // On a GPU the batch is the point (its products may round a row by the
  // batch's size: within float rounding of each call alone), as for the
  // motion generator's windows; on the CPU only where each call keeps its
  // bits, measured now (the element's start), not in a live stream's first
  // call.
  const bool gpu = !model->device().is_cpu();
  if (max_batch > 1 && !gpu) model->rows_independent();
  return shared_batcher<WindowBatcher>(key, max_batch, max_delay, [&] {
    auto run = [model, gpu](const std::vector<const WindowJob*>& jobs) {
      std::vector<at::Tensor> out(jobs.size());
      std::vector<Model::CachedCall> together;
      std::vector<size_t> where;
      const bool batch = jobs.size() > 1 && (gpu || model->rows_independent());
      for (size_t i = 0; i < jobs.size(); ++i) {
        if (!jobs[i]->cached) {
          out[i] = model->hidden_states(jobs[i]->wave);
        } else if (batch) {
          together.push_back(jobs[i]->call);
          where.push_back(i);
        } else {
          out[i] = model->hidden_states_cached(std::vector<Model::CachedCall>{jobs[i]->call}).front();
        }
      }
      if (!together.empty()) {
        std::vector<at::Tensor> got = model->hidden_states_cached(together);
        for (size_t j = 0; j < where.size(); ++j) out[where[j]] = std::move(got[j]);
      }
      return out;
    };
    return std::make_shared<WindowBatcher>(run, max_batch, max_delay);
  });
}

at::Tensor pad_for_video(const at::Tensor& states) {
  return at::cat({states, states.slice(1, states.size(1) - 1, states.size(1))}, 1);
}

}  // namespace anitalker::hubert
