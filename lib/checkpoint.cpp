#include "checkpoint.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_set>
#include <nlohmann/json.hpp>

#include "error.h"
#include "printable.h"
#include "pickle.h"
#include "zip.h"

namespace anitalker {

namespace {

using T = PyObject::Type;

bool storage_dtype(const std::string& cls, DType& out) {
  static const std::map<std::string, DType> table = {
      {"torch.FloatStorage", DType::Float32},  {"torch.DoubleStorage", DType::Float64},
      {"torch.HalfStorage", DType::Float16},   {"torch.BFloat16Storage", DType::BFloat16},
      {"torch.LongStorage", DType::Int64},     {"torch.IntStorage", DType::Int32},
      {"torch.ShortStorage", DType::Int16},    {"torch.CharStorage", DType::Int8},
      {"torch.ByteStorage", DType::UInt8},     {"torch.BoolStorage", DType::Bool},
      {"torch.UntypedStorage", DType::UInt8},  {"torch.storage.UntypedStorage", DType::UInt8},
  };
  auto it = table.find(cls);
  if (it == table.end()) return false;
  out = it->second;
  return true;
}

// Flattens dicts (and lists/tuples, by index) into dotted keys.  Depth is
// bounded: a crafted pickle can nest, or even point back into itself.
constexpr int kMaxDepth = 32;

std::string key_string(const PyObject& k) {
  if (k.type == T::Str) return k.s;
  if (k.type == T::Int) return std::to_string(k.i);
  return std::string();
}

}  // namespace

void Checkpoint::add(const std::string& key, TensorData t) {
  if (tensors_.emplace(key, std::move(t)).second) keys_.push_back(key);
}

std::shared_ptr<const Checkpoint> Checkpoint::open(const std::string& path) {
  return from_bytes(map_file(path), path);
}

std::shared_ptr<const Checkpoint> Checkpoint::from_bytes(std::shared_ptr<const Storage> bytes, const std::string& name) {
  auto c = std::shared_ptr<Checkpoint>(new Checkpoint());
  c->name_ = name;
  const uint8_t* d = bytes->data;
  const size_t n = bytes->nbytes;
  if (n == 0) throw format_error(name + ": empty file, expected a torch.save archive or a safetensors file");
  if (n >= 4 && std::memcmp(d, "PK\x03\x04", 4) == 0) {
    c->format_ = Format::TorchZip;
    c->load_torch_zip(bytes);
  } else if (n >= 9 && d[8] == '{') {
    c->format_ = Format::Safetensors;
    c->load_safetensors(bytes);
  } else if (n >= 2 && d[0] == 0x80 && d[1] <= 5) {
    throw format_error(name + ": legacy torch.save format (a bare pickle, PyTorch < 1.6); "
                       "expected the zip format: re-save it with a current torch.save");
  } else {
    char magic[16];
    std::snprintf(magic, sizeof magic, "%02x %02x %02x %02x", d[0], n > 1 ? d[1] : 0, n > 2 ? d[2] : 0, n > 3 ? d[3] : 0);
    throw format_error(name + ": not a checkpoint: wrong magic number (" + magic +
                       "); expected a torch.save zip archive (50 4b 03 04, \"PK\") or a safetensors file");
  }
  return c;
}

void Checkpoint::load_torch_zip(const std::shared_ptr<const Storage>& bytes) {
  ZipArchive zip(bytes, name_);
  // The archive's top folder is named after the file it was saved as.
  std::string pkl;
  for (const auto& e : zip.entries()) {
    const std::string& en = e.first;
    const size_t slash = en.find('/');
    if (slash != std::string::npos && en.compare(slash, std::string::npos, "/data.pkl") == 0) {
      pkl = en;
      break;
    }
  }
  if (pkl.empty()) throw format_error(name_ + ": zip archive has no '<name>/data.pkl' entry; not a torch.save file");
  const std::string stem = pkl.substr(0, pkl.size() - 9);
  const std::string bo = stem + "/byteorder";
  if (zip.has(bo)) {
    auto b = zip.read(bo);
    if (std::string(reinterpret_cast<const char*>(b->data), b->nbytes) != "little")
      throw format_error(name_ + ": '" + printable(bo) + "' says the tensors are big-endian; only little-endian is supported");
  }

  std::map<std::string, PyRef> storages;
  auto persistent_load = [&](Pickle& p, PyRef pid) -> PyRef {
    // ('storage', torch.FloatStorage, '<key>', '<location>', numel)
    if (pid->type != T::Tuple || pid->items.size() < 5 || pid->items[0]->type != T::Str || pid->items[0]->s != "storage")
      throw format_error(name_ + ": " + pkl + ": unknown persistent id, expected ('storage', type, key, location, numel)");
    const PyRef& cls = pid->items[1];
    const PyRef& key = pid->items[2];
    const PyRef& numel = pid->items[4];
    if (key->type != T::Str || numel->type != T::Int || numel->i < 0)
      throw format_error(name_ + ": " + pkl + ": malformed storage id");
    auto it = storages.find(key->s);
    if (it != storages.end()) return it->second;
    DType dt;
    if (cls->type != T::Global || !storage_dtype(cls->s, dt))
      throw format_error(name_ + ": storage '" + printable(key->s) + "': unknown dtype '" + printable(cls->type == T::Global ? cls->s : std::string(cls->type_name())) +
                         "'; supported: float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool");
    const std::string entry = stem + "/data/" + key->s;
    if (!zip.has(entry)) throw format_error(name_ + ": missing zip entry '" + printable(entry) + "' (truncated or damaged file?)");
    auto data = zip.read(entry);
    const uint64_t want = static_cast<uint64_t>(numel->i) * dtype_size(dt);
    if (numel->i > static_cast<int64_t>(data->nbytes) || data->nbytes < want)
      throw format_error(name_ + ": storage '" + printable(entry) + "' is too short: " + std::to_string(data->nbytes) + " bytes, expected " +
                         std::to_string(want) + " (" + std::to_string(numel->i) + " x " + dtype_name(dt) + ")");
    // LibTorch's kernels expect naturally aligned data; torch.save aligns
    // entries to 64 bytes, so a copy happens only for odd hand-made files.
    if (reinterpret_cast<uintptr_t>(data->data) % dtype_size(dt) != 0) {
      auto buf = std::shared_ptr<uint8_t>(new uint8_t[want ? want : 1], std::default_delete<uint8_t[]>());
      std::memcpy(buf.get(), data->data, want);
      auto s = std::make_shared<Storage>();
      s->data = buf.get();
      s->nbytes = want;
      s->owner = buf;
      data = s;
    }
    PyRef o = p.make(T::Storage);
    o->dtype = dt;
    o->storage = data;
    o->s = entry;
    storages[key->s] = o;
    return o;
  };
  auto entry = zip.read(pkl);
  auto pickle = unpickle(entry->data, entry->nbytes, name_ + ": " + pkl, persistent_load);
  const PyObject& root = *pickle->root;
  if (root.type != T::Dict)
    throw format_error(name_ + ": expected a dict of tensors at the top of " + pkl + ", found " + root.a_type());

  // Iterative flattening with an explicit stack, in file order.  A
  // container the pickle refers to twice (its memo: torch.save({'model': sd,
  // 'ema': sd})) is listed under each name, as torch.load gives it; the
  // walk's work is bounded (shared sub-objects could make it exponential),
  // a container inside itself and nesting past kMaxDepth are refused (they
  // were skipped without a word, their tensors missing).
  struct Frame {
    const PyObject* obj;
    std::string prefix;
    size_t next;
  };
  constexpr size_t kMaxVisits = size_t{1} << 22;
  size_t visits = 0;
  std::vector<Frame> st{{&root, "", 0}};
  std::unordered_set<const PyObject*> open_now{&root};  // the containers on the stack
  while (!st.empty()) {
    Frame& f = st.back();
    const bool is_dict = f.obj->type == T::Dict;
    const size_t count = is_dict ? f.obj->dict.size() : f.obj->items.size();
    if (f.next >= count) {
      open_now.erase(f.obj);
      st.pop_back();
      continue;
    }
    if (++visits > kMaxVisits)
      throw format_error(name_ + ": " + pkl + " refers to its containers more than " + std::to_string(kMaxVisits) +
                         " times over (shared many times: a damaged or crafted file?)");
    const size_t i = f.next++;
    std::string k;
    const PyObject* v;
    if (is_dict) {
      k = key_string(*f.obj->dict[i].first);
      v = f.obj->dict[i].second;
      if (k.empty()) continue;  // keys that are not names (tuples, objects) hold no weights
    } else {
      k = std::to_string(i);
      v = f.obj->items[i];
    }
    const std::string full = f.prefix + k;
    if (v->type == T::Tensor) {
      add(full, v->tensor);
    } else if (v->type == T::Dict || v->type == T::List || v->type == T::Tuple) {
      if (!open_now.insert(v).second)
        throw format_error(name_ + ": '" + printable(full) + "' in " + pkl + " holds itself (a damaged or crafted file?)");
      if (st.size() >= static_cast<size_t>(kMaxDepth))
        throw format_error(name_ + ": '" + printable(full) + "' in " + pkl + " is nested more than " +
                           std::to_string(kMaxDepth) + " containers deep, the most this reader follows (a damaged or crafted file?)");
      st.push_back(Frame{v, full + ".", 0});
    }
  }
}

void Checkpoint::load_safetensors(const std::shared_ptr<const Storage>& bytes) {
  const uint8_t* d = bytes->data;
  const uint64_t n = bytes->nbytes;
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(d[i]) << (8 * i);
  if (hlen > n - 8) throw format_error(name_ + ": safetensors header of " + std::to_string(hlen) + " bytes runs past the end of the file (truncated file?)");
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(d + 8, d + 8 + hlen);
  } catch (const std::exception& e) {
    throw format_error(name_ + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!h.is_object()) throw format_error(name_ + ": safetensors header is not a JSON object");
  static const std::map<std::string, DType> table = {
      {"F64", DType::Float64}, {"F32", DType::Float32}, {"F16", DType::Float16}, {"BF16", DType::BFloat16},
      {"I64", DType::Int64},   {"I32", DType::Int32},   {"I16", DType::Int16},   {"I8", DType::Int8},
      {"U8", DType::UInt8},    {"BOOL", DType::Bool}};
  const uint64_t base = 8 + hlen, avail = n - base;
  struct Item {
    uint64_t begin;
    std::string key;
    TensorData t;
  };
  std::vector<Item> items;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string what = name_ + ": tensor '" + printable(it.key()) + "'";
    const auto& v = it.value();
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      throw format_error(what + ": expected {\"dtype\", \"shape\", \"data_offsets\": [begin, end]}");
    auto dt = table.find(v["dtype"].get<std::string>());
    if (dt == table.end()) throw format_error(what + ": unknown dtype '" + printable(v["dtype"].get<std::string>()) + "'");
    TensorData t;
    t.dtype = dt->second;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_unsigned()) throw format_error(what + ": shape must hold non-negative integers");
      t.shape.push_back(s.get<int64_t>());
    }
    check_shape(t.shape, what);
    t.strides = contiguous_strides(t.shape);
    const auto& o = v["data_offsets"];
    if (!o[0].is_number_unsigned() || !o[1].is_number_unsigned()) throw format_error(what + ": bad data_offsets");
    const uint64_t b = o[0].get<uint64_t>(), e = o[1].get<uint64_t>();
    if (b > e || e > avail) throw format_error(what + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] lie outside the data (truncated file?)");
    auto s = std::make_shared<Storage>();
    s->data = d + base + b;
    s->nbytes = e - b;
    s->owner = bytes;
    t.storage = s;
    check_view_bounds(t, what);
    if (static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype) != e - b)
      throw format_error(what + ": " + std::to_string(e - b) + " bytes of data do not fit the shape " + shape_string(t.shape) + " of " + dtype_name(t.dtype));
    if (reinterpret_cast<uintptr_t>(s->data) % dtype_size(t.dtype) != 0) {
      const size_t nb = s->nbytes;
      auto buf = std::shared_ptr<uint8_t>(new uint8_t[nb ? nb : 1], std::default_delete<uint8_t[]>());
      std::memcpy(buf.get(), s->data, nb);
      s->data = buf.get();
      s->owner = buf;
    }
    items.push_back(Item{b, it.key(), std::move(t)});
  }
  // File order is data order (the JSON object's key order is not kept).
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.begin < b.begin; });
  for (auto& it : items) add(it.key, std::move(it.t));
}

const TensorData* Checkpoint::find(const std::string& key) const {
  auto it = tensors_.find(key);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorData& Checkpoint::at(const std::string& key) const {
  const TensorData* t = find(key);
  if (!t) throw format_error(name_ + ": missing tensor '" + key + "'");
  return *t;
}

}  // namespace anitalker
