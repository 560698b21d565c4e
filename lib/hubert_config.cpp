// HuBERT's config.json (hubert_config.h).
#include "hubert_config.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "error.h"
#include "printable.h"
#include "tensor_data.h"

namespace anitalker::hubert {

namespace {

int get_int(const nlohmann::json& j, const std::string& path, const char* field, int lo, int hi) {
  if (!j.contains(field)) throw format_error(path + ": missing field '" + field + "'");
  const auto& v = j[field];
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    throw format_error(path + ": field '" + field + "' must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                       ", got " + v.dump());
  return v.get<int>();
}

std::vector<int> get_ints(const nlohmann::json& j, const std::string& path, const char* field, int lo, int hi) {
  if (!j.contains(field) || !j[field].is_array() || j[field].empty() || j[field].size() > 32)
    throw format_error(path + ": field '" + field + "' must be a list of 1 to 32 integers");
  std::vector<int> out;
  for (const auto& v : j[field]) {
    if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
      throw format_error(path + ": field '" + field + "' must hold integers from " + std::to_string(lo) + " to " + std::to_string(hi) +
                         ", got " + v.dump());
    out.push_back(v.get<int>());
  }
  return out;
}

}  // namespace

static Config config_from_json(const nlohmann::json& j, const std::string& path);

Config read_config(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw Error(Error::Kind::NotFound, path + ": no such file");
  std::shared_ptr<const Storage> bytes = map_file(path);
  return parse_config(reinterpret_cast<const char*>(bytes->data), bytes->nbytes, path);
}

Config parse_config(const char* data, size_t size, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const std::exception& e) {
    throw format_error(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw format_error(path + ": expected a JSON object");
  try {
    return config_from_json(j, path);
  } catch (const nlohmann::json::exception& e) {
    // A field of the wrong JSON type (found by fuzz_config: "do_stable_layer_norm": "x").
    throw format_error(path + ": a field has the wrong type: " + e.what());
  }
}

static Config config_from_json(const nlohmann::json& j, const std::string& path) {
  Config c;
  c.hidden = get_int(j, path, "hidden_size", 1, 65536);
  c.layers = get_int(j, path, "num_hidden_layers", 1, 1024);
  c.heads = get_int(j, path, "num_attention_heads", 1, 1024);
  c.intermediate = get_int(j, path, "intermediate_size", 1, 1 << 20);
  if (c.hidden % c.heads) throw format_error(path + ": hidden_size " + std::to_string(c.hidden) + " is not a multiple of num_attention_heads " + std::to_string(c.heads));
  c.conv_dim = get_ints(j, path, "conv_dim", 1, 65536);
  c.conv_kernel = get_ints(j, path, "conv_kernel", 1, 4096);
  c.conv_stride = get_ints(j, path, "conv_stride", 1, 4096);
  if (c.conv_dim.size() != c.conv_kernel.size() || c.conv_dim.size() != c.conv_stride.size())
    throw format_error(path + ": conv_dim, conv_kernel and conv_stride must have the same length");
  // The encoder's total stride and receptive field stay far inside int64
  // (the released ones: 320 and 400 samples).
  int64_t stride = 1, rf = 1;
  for (size_t i = 0; i < c.conv_kernel.size(); ++i) {
    rf += (int64_t)(c.conv_kernel[i] - 1) * stride;
    stride *= c.conv_stride[i];
    if (stride > (1 << 24) || rf > (1LL << 30))
      throw format_error(path + ": conv_kernel and conv_stride give a receptive field or stride beyond 2^24 samples");
  }
  c.pos_kernel = get_int(j, path, "num_conv_pos_embeddings", 1, 4096);
  c.pos_groups = get_int(j, path, "num_conv_pos_embedding_groups", 1, 65536);
  if (c.hidden % c.pos_groups) throw format_error(path + ": hidden_size is not a multiple of num_conv_pos_embedding_groups");
  if (j.contains("layer_norm_eps")) {
    if (!j["layer_norm_eps"].is_number() || !(j["layer_norm_eps"].get<double>() > 0) || j["layer_norm_eps"].get<double>() > 1)
      throw format_error(path + ": field 'layer_norm_eps' must be a number in (0, 1]");
    c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  c.feat_extract_norm = j.value("feat_extract_norm", std::string("group"));
  if (c.feat_extract_norm != "layer" && c.feat_extract_norm != "group")
    throw format_error(path + ": field 'feat_extract_norm' must be \"layer\" or \"group\", got \"" + printable(c.feat_extract_norm) + "\"");
  c.conv_bias = j.value("conv_bias", false);
  if (!j.value("do_stable_layer_norm", false))
    throw format_error(path + ": do_stable_layer_norm is false: only the stable-layer-norm (pre-LN) HuBERT of chinese-hubert-large is supported");
  for (const char* act : {"hidden_act", "feat_extract_activation"}) {
    const std::string a = j.value(act, std::string("gelu"));
    if (a != "gelu") throw format_error(path + ": field '" + std::string(act) + "' is \"" + printable(a) + "\"; only \"gelu\" is supported");
  }
  if (j.contains("feat_proj_layer_norm") && !j.value("feat_proj_layer_norm", true))
    throw format_error(path + ": feat_proj_layer_norm false is not supported");
  return c;
}

int64_t frame_count(const Config& c, int64_t n) {
  for (size_t i = 0; i < c.conv_kernel.size(); ++i) {
    if (n < c.conv_kernel[i]) return 0;
    n = (n - c.conv_kernel[i]) / c.conv_stride[i] + 1;
  }
  return n;
}

int64_t receptive_field(const Config& c) {
  int64_t rf = 1, jump = 1;
  for (size_t i = 0; i < c.conv_kernel.size(); ++i) {
    rf += (c.conv_kernel[i] - 1) * jump;
    jump *= c.conv_stride[i];
  }
  return rf;
}

}  // namespace anitalker::hubert
