// The checkpoint reader against what torch.load sees (tests/data/reader/
// checkpoints.json and special.json, written by make_reader_data.py), and
// its errors on damaged files.
#include "checkpoint.h"

#include <gmock/gmock.h>

#include <chrono>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>

#include "checkpoint_writer.h"
#include "error.h"
#include "pickle.h"
#include "test_util.h"
#include "zip.h"

using anitalker::Checkpoint;
using anitalker::DType;
using anitalker::Error;
using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

// Compares every tensor of `ckpt` with torch.load's description, in order.
void expect_matches_reference(const Checkpoint& ckpt, const nlohmann::json& ref, bool all_values) {
  ASSERT_EQ(ckpt.size(), ref.size()) << ckpt.name();
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto& r = ref[i];
    const std::string key = r["key"];
    SCOPED_TRACE(ckpt.name() + ": " + key);
    ASSERT_EQ(ckpt.keys()[i], key);
    const anitalker::TensorData& t = ckpt.at(key);
    EXPECT_EQ(anitalker::dtype_name(t.dtype), r["dtype"].get<std::string>());
    EXPECT_EQ(t.shape, r["shape"].get<std::vector<int64_t>>());
    const std::vector<double> v = t.to_doubles();
    if (all_values) {
      const auto want = r["values"].get<std::vector<double>>();
      ASSERT_EQ(v.size(), want.size());
      for (size_t k = 0; k < v.size(); ++k) EXPECT_EQ(v[k], want[k]) << "element " << k;
    } else {
      const auto first = r["first"].get<std::vector<double>>();
      for (size_t k = 0; k < first.size(); ++k) EXPECT_EQ(v[k], first[k]) << "element " << k;
      if (!v.empty()) EXPECT_EQ(v.back(), r["last"][0].get<double>());
      double sum = 0;
      for (double x : v) sum += x;
      const double want = r["sum"];
      EXPECT_NEAR(sum, want, 1e-9 * (1 + std::fabs(want)));
    }
  }
}

}  // namespace

TEST(Checkpoint, EveryFixtureMatchesTorchLoad) {
  const nlohmann::json ref = testutil::json_file(data("reader/checkpoints.json"));
  ASSERT_EQ(ref.size(), 10u);  // renderer 2, audio 1, motion 5, face-sr 2
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    auto ckpt = Checkpoint::open(data(it.key()));
    EXPECT_EQ(ckpt->format(), Checkpoint::Format::TorchZip);
    expect_matches_reference(*ckpt, it.value(), false);
  }
}

TEST(Checkpoint, FixtureKeyCountsAsDocumented) {
  // The counts the fixtures' READMEs give.
  EXPECT_EQ(Checkpoint::open(data("renderer/tiny_lia.ckpt"))->size(), 207u);
  EXPECT_EQ(Checkpoint::open(data("renderer/s64_perturbed/tiny64_perturbed_lia.ckpt"))->size(), 153u);
  EXPECT_EQ(Checkpoint::open(data("audio/tiny_hubert/pytorch_model.bin"))->size(), 86u);
  auto gfpgan = Checkpoint::open(data("face-sr/gfpgan_tiny.pth"));
  EXPECT_EQ(gfpgan->size(), 285u);
  EXPECT_EQ(gfpgan->keys()[0].rfind("params_ema.", 0), 0u);  // {'params_ema': ...} flattened
  EXPECT_EQ(Checkpoint::open(data("face-sr/parsenet_tiny.pth"))->size(), 142u);
  int64_t values = 0;
  auto lia = Checkpoint::open(data("renderer/tiny_lia.ckpt"));
  for (const auto& k : lia->keys()) values += lia->at(k).numel();
  EXPECT_EQ(values, 101278);
}

TEST(Checkpoint, TorchSaveSpecialCases) {
  // Non-contiguous views, shared storages, every dtype, 0-d and empty
  // tensors, a Parameter, nested dicts and lists, non-tensor objects.
  auto ckpt = Checkpoint::open(data("reader/special.pt"));
  expect_matches_reference(*ckpt, testutil::json_file(data("reader/special.json")), true);
  const auto& tr = ckpt->at("state_dict.view.transposed");
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.strides, (std::vector<int64_t>{1, 8}));
  const auto& sl = ckpt->at("state_dict.view.sliced");
  EXPECT_EQ(sl.offset, 17);
  EXPECT_EQ(sl.strides, (std::vector<int64_t>{8, 3}));
  // One storage, not two copies.
  EXPECT_EQ(ckpt->at("state_dict.shared.a").storage.get(), ckpt->at("state_dict.shared.b").storage.get());
  EXPECT_EQ(ckpt->at("state_dict.shared.b").offset, 6);
  EXPECT_EQ(tr.storage.get(), sl.storage.get());
  EXPECT_EQ(ckpt->at("state_dict.scalar").shape.size(), 0u);
  EXPECT_EQ(ckpt->at("state_dict.bf16").dtype, DType::BFloat16);
  EXPECT_EQ(ckpt->find("hyper_parameters"), nullptr);
  EXPECT_NE(ckpt->find("nested.inner.w"), nullptr);
  EXPECT_NE(ckpt->find("nested.lst.0"), nullptr);
}

TEST(Checkpoint, Safetensors) {
  auto ckpt = Checkpoint::open(data("reader/small.safetensors"));
  EXPECT_EQ(ckpt->format(), Checkpoint::Format::Safetensors);
  expect_matches_reference(*ckpt, testutil::json_file(data("reader/small.safetensors.json")), true);
}

TEST(Checkpoint, WriterRoundTrip) {
  testutil::TempDir dir;
  std::vector<float> a = {1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f};
  std::vector<int64_t> b = {-1, 1LL << 40};
  std::vector<uint16_t> h = {0x3c00, 0xc000};  // 1.0, -2.0 in float16
  anitalker::write_checkpoint(dir / "w.pth",
                              {{"x.a", DType::Float32, {2, 3}, a.data()},
                               {"x.b", DType::Int64, {2}, b.data()},
                               {"x.h", DType::Float16, {2}, h.data()}},
                              "params_ema");
  auto ckpt = Checkpoint::open(dir / "w.pth");
  ASSERT_EQ(ckpt->size(), 3u);
  EXPECT_EQ(ckpt->keys()[0], "params_ema.x.a");
  EXPECT_EQ(ckpt->at("params_ema.x.a").to_doubles(), (std::vector<double>{1.5, -2, 3.25, 0, 7, 8}));
  EXPECT_EQ(ckpt->at("params_ema.x.b").to_doubles(), (std::vector<double>{-1, 1099511627776.0}));
  EXPECT_EQ(ckpt->at("params_ema.x.h").to_doubles(), (std::vector<double>{1.0, -2.0}));
  // Storages are 64-byte aligned, as torch.save writes them.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ckpt->at("params_ema.x.b").data()) % 64, 0u);
}

// --- bad files: each gives one clear error naming the file and the cause.

class BadFile : public testing::Test {
 protected:
  // A small valid checkpoint's parts, to damage.
  std::vector<float> w = std::vector<float>(12, 0.5f);
  std::vector<anitalker::TensorToWrite> tensors{{"layer.weight", DType::Float32, {3, 4}, w.data()}};
  std::string pkl = anitalker::state_dict_pickle(tensors);
  testutil::TempDir dir;

  std::string write_zip(const std::string& name, const std::string& pickle, uint64_t data_bytes) {
    anitalker::write_torch_zip(dir / name, "archive",
                               {{"data.pkl", pickle.data(), pickle.size()}, {"data/0", w.data(), data_bytes}});
    return dir / name;
  }
  Error::Kind kind_of(const std::string& path) {
    try {
      Checkpoint::open(path);
    } catch (const Error& e) {
      return e.kind();
    }
    return Error::Kind::Runtime;
  }
};

TEST_F(BadFile, DoesNotExist) {
  const std::string p = dir / "nothing-here.ckpt";
  EXPECT_EQ(error_of([&] { Checkpoint::open(p); }), p + ": no such file");
  EXPECT_EQ(kind_of(p), Error::Kind::NotFound);
}

TEST_F(BadFile, Empty) {
  testutil::spit(dir / "empty.ckpt", "");
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir / "empty.ckpt"); }),
              HasSubstr("empty.ckpt: empty file, expected a torch.save archive or a safetensors file"));
}

TEST_F(BadFile, WrongMagic) {
  testutil::spit(dir / "image.pth", "GIF89a not a checkpoint at all");
  const std::string msg = error_of([&] { Checkpoint::open(dir / "image.pth"); });
  EXPECT_THAT(msg, HasSubstr("image.pth: not a checkpoint: wrong magic number (47 49 46 38)"));
  EXPECT_THAT(msg, HasSubstr("expected a torch.save zip archive"));
  EXPECT_EQ(kind_of(dir / "image.pth"), Error::Kind::Format);
}

// A file larger than the memory and swap the system lets a process reserve
// (a 1 TiB sparse file that opens like a zip): the private map fails, and
// the message says why with the file's size (it said only "Cannot allocate
// memory", found 2026-12-07).  Where the system maps anything
// (vm.overcommit_memory=1) it is read and refused as a broken archive.
TEST_F(BadFile, LargerThanTheMemoryThatCanBeReserved) {
  const std::string p = dir / "huge.ckpt";
  testutil::spit(p, std::string("PK\x03\x04", 4));
  ASSERT_EQ(::truncate(p.c_str(), off_t(1) << 40), 0) << "a 1 TiB sparse file: " << std::strerror(errno);
  std::string mode;
  {
    std::ifstream f("/proc/sys/vm/overcommit_memory");
    std::getline(f, mode);
  }
  const std::string msg = error_of([&] { Checkpoint::open(p); });
  if (mode == "1") {
    EXPECT_THAT(msg, HasSubstr("huge.ckpt")) << msg;
  } else {
    EXPECT_THAT(msg, HasSubstr("huge.ckpt: cannot map: Cannot allocate memory (the file is 1099.5 GB, more than the "
                               "memory and swap this system lets a process reserve; is it the right file?)"));
  }
}

// A pipe, a device or a folder given as a checkpoint: refused at once,
// saying what it is.  A FIFO used to block the open for ever, waiting for a
// writer (found 2026-12-07: `anitalker inspect`, the elements'
// `checkpoint`); if it blocks again, the test fails after 5 s and opens the
// FIFO's other end to let the reader go.
TEST_F(BadFile, PipeDeviceOrFolder) {
  const std::string fifo = dir / "pipe.ckpt";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto opened = std::async(std::launch::async, [&] { return error_of([&] { Checkpoint::open(fifo); }); });
  if (opened.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "opening a FIFO as a checkpoint blocked";
    const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  EXPECT_THAT(opened.get(), HasSubstr("pipe.ckpt: not a regular file (a pipe (FIFO))"));
  EXPECT_THAT(error_of([&] { Checkpoint::open("/dev/null"); }), HasSubstr("/dev/null: not a regular file (a device)"));
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir.path()); }), HasSubstr(": not a regular file (a folder)"));
}

TEST_F(BadFile, LegacyFormat) {
  testutil::spit(dir / "old.pth", std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir / "old.pth"); }), HasSubstr("old.pth: legacy torch.save format"));
}

TEST_F(BadFile, TruncatedAnywhere) {
  // Cut a real fixture at many lengths: each cut gives a Format error that
  // names the file, never a crash.
  const std::string whole = testutil::slurp(data("renderer/tiny_lia.ckpt"));
  for (size_t len : {size_t(1), size_t(3), size_t(21), size_t(100), whole.size() / 3, whole.size() / 2,
                     whole.size() - 23, whole.size() - 1}) {
    testutil::spit(dir / "cut.ckpt", whole.substr(0, len));
    std::string msg;
    try {
      Checkpoint::open(dir / "cut.ckpt");
      ADD_FAILURE() << "a checkpoint cut to " << len << " bytes loaded";
    } catch (const Error& e) {
      msg = e.what();
      EXPECT_EQ(e.kind(), Error::Kind::Format);
    }
    EXPECT_THAT(msg, HasSubstr("cut.ckpt: ")) << len;
    if (len >= 22) EXPECT_THAT(msg, HasSubstr("truncated")) << len << ": " << msg;
  }
}

TEST_F(BadFile, UnknownPickleOpcode) {
  std::string bad = pkl;
  bad[2] = '\xfe';  // the first opcode after PROTO 2
  const std::string p = write_zip("op.ckpt", bad, 48);
  EXPECT_THAT(error_of([&] { Checkpoint::open(p); }),
              HasSubstr("op.ckpt: archive/data.pkl: bad pickle: unsupported pickle opcode '?' (byte 2, opcode 0xfe)"));
}

TEST_F(BadFile, StorageTooShort) {
  const std::string p = write_zip("short.ckpt", pkl, 40);  // 12 floats need 48 bytes
  EXPECT_THAT(error_of([&] { Checkpoint::open(p); }),
              HasSubstr("short.ckpt: storage 'archive/data/0' is too short: 40 bytes, expected 48 (12 x float32)"));
}

TEST_F(BadFile, ViewOutsideStorage) {
  // The pickle claims a [4, 4] view on a 12-element storage.
  std::string bad = pkl;
  std::vector<anitalker::TensorToWrite> t4{{"layer.weight", DType::Float32, {4, 4}, w.data()}};
  std::string big = anitalker::state_dict_pickle(t4);
  // Keep the storage's numel at 12 but the size tuple at (4, 4).
  const std::string numel16("J\x10\x00\x00\x00", 5), numel12("J\x0c\x00\x00\x00", 5);
  big.replace(big.find(numel16), 5, numel12);
  const std::string p = write_zip("view.ckpt", big, 48);
  EXPECT_THAT(error_of([&] { Checkpoint::open(p); }),
              HasSubstr("view.ckpt: archive/data.pkl: tensor on storage 'archive/data/0': storage too short: the view [4, 4] at offset 0 "
                        "needs 16 elements, the storage holds 12"));
}

TEST_F(BadFile, UnknownDtype) {
  std::string bad = pkl;
  bad.replace(bad.find("FloatStorage"), 12, "ComplexFloatStorage");
  const std::string p = write_zip("dtype.ckpt", bad, 48);
  EXPECT_THAT(error_of([&] { Checkpoint::open(p); }),
              HasSubstr("dtype.ckpt: storage '0': unknown dtype 'torch.ComplexFloatStorage'; supported: float32"));
}

TEST_F(BadFile, MissingStorageEntry) {
  anitalker::write_torch_zip(dir / "nostore.ckpt", "archive", {{"data.pkl", pkl.data(), pkl.size()}});
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir / "nostore.ckpt"); }),
              HasSubstr("nostore.ckpt: missing zip entry 'archive/data/0'"));
}

TEST_F(BadFile, ZipWithoutPickle) {
  anitalker::write_torch_zip(dir / "nopkl.zip", "archive", {{"hello.txt", "hi", 2}});
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir / "nopkl.zip"); }), HasSubstr("nopkl.zip: zip archive has no '<name>/data.pkl' entry"));
}

TEST_F(BadFile, TopLevelNotADict) {
  const std::string list_pickle("\x80\x02]q\x00.", 6);
  const std::string p = write_zip("list.ckpt", list_pickle, 48);
  EXPECT_THAT(error_of([&] { Checkpoint::open(p); }), HasSubstr("list.ckpt: expected a dict of tensors at the top of archive/data.pkl, found a list"));
}

TEST_F(BadFile, SafetensorsErrors) {
  const std::string good = testutil::slurp(data("reader/small.safetensors"));
  testutil::spit(dir / "cut.safetensors", good.substr(0, good.size() - 5));
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir / "cut.safetensors"); }), HasSubstr("lie outside the data (truncated file?)"));
  std::string hdr = "{\"w\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}";
  std::string f(8, '\0');
  f[0] = static_cast<char>(hdr.size());
  testutil::spit(dir / "c64.safetensors", f + hdr + std::string(8, '\0'));
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir / "c64.safetensors"); }), HasSubstr("c64.safetensors: tensor 'w': unknown dtype 'C64'"));
}

TEST(Pickle, CyclesAndDepthDoNotHurt) {
  // A list appended to itself, and lists nested 100 deep: both load (as
  // non-tensor objects) without recursion or leaks.
  const std::string p = std::string("\x80\x02}", 3) + std::string("q\0", 2) + std::string("X\x01\x00\x00\x00" "a", 6) + "]q\x01h\x01" "a" "s.";
  auto pk = anitalker::unpickle(reinterpret_cast<const uint8_t*>(p.data()), p.size(), "cycle", nullptr);
  ASSERT_EQ(pk->root->dict.size(), 1u);
  EXPECT_EQ(pk->root->dict[0].second->items[0], pk->root->dict[0].second);

  std::string deep("\x80\x02}", 3);
  deep += std::string("X\x01\x00\x00\x00" "k", 6);
  for (int i = 0; i < 100; ++i) deep += "]";
  for (int i = 0; i < 99; ++i) deep += "a";
  deep += "s.";
  pk = anitalker::unpickle(reinterpret_cast<const uint8_t*>(deep.data()), deep.size(), "deep", nullptr);
  EXPECT_EQ(pk->root->dict.size(), 1u);
}

// Pickle pieces for the tests below: a BINUNICODE string, a BININT, a
// GLOBAL, a tuple, and a float32 tensor of storage "0" (12 values) as
// torch.save writes one.
std::string pickled_str(const std::string& s) {
  std::string out = "X";
  for (int i = 0; i < 4; ++i) out += static_cast<char>((s.size() >> (8 * i)) & 0xff);
  return out + s;
}
std::string pickled_int(int v) {
  std::string out = "J";
  for (int i = 0; i < 4; ++i) out += static_cast<char>((static_cast<uint32_t>(v) >> (8 * i)) & 0xff);
  return out;
}
std::string pickled_global(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }
std::string pickled_tuple(const std::vector<std::string>& items) {
  std::string out = "(";
  for (const std::string& i : items) out += i;
  return out + "t";
}
std::string pickled_tensor_3x4() {
  return pickled_global("torch._utils", "_rebuild_tensor_v2") + "(" +
         pickled_tuple({pickled_str("storage"), pickled_global("torch", "FloatStorage"), pickled_str("0"),
                        pickled_str("cpu"), pickled_int(12)}) +
         "Q" + pickled_int(0) + pickled_tuple({pickled_int(3), pickled_int(4)}) +
         pickled_tuple({pickled_int(4), pickled_int(1)}) + "\x89" + pickled_global("collections", "OrderedDict") +
         ")RtR";
}

TEST_F(BadFile, SharedContainersAreListedUnderEachName) {
  // torch.save({'model': sd, 'ema': sd}): the dict is pickled once and
  // fetched again from the memo; torch.load gives both names, and so does
  // the reader (it listed model.w alone, found 2026-12-07).
  const std::string inner = std::string("}q\x01(", 4) + pickled_str("w") + pickled_tensor_3x4() + "u";
  const std::string q = std::string("\x80\x02}(", 4) + pickled_str("model") + inner + pickled_str("ema") +
                        std::string("h\x01", 2) + "u.";
  auto ckpt = Checkpoint::open(write_zip("shared.ckpt", q, 48));
  ASSERT_EQ(ckpt->keys(), (std::vector<std::string>{"model.w", "ema.w"}));
  EXPECT_EQ(ckpt->at("ema.w").shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(ckpt->at("ema.w").data(), ckpt->at("model.w").data());
}

TEST_F(BadFile, SharedContainersAreBounded) {
  // n lists, each holding the next one twice (memo GET): 2^n paths.  Each
  // step: memo the list on top, make a new list, fetch the old one twice
  // and extend the new list with that pair.  40 deep: refused for the
  // depth; 24 deep (16.8 million paths): refused for the work, at once;
  // 12 deep (4096 paths) read, no tensors.
  auto dag = [](int n) {
    std::string q("\x80\x02}", 3);
    q += std::string("X\x01\x00\x00\x00" "k", 6);
    q += "]";
    const std::string step = std::string("q\0", 2) + std::string("0](h\0", 5) + std::string("h\0", 2) + "e";
    for (int i = 0; i < n; ++i) q += step;
    return q + "s.";
  };
  EXPECT_THAT(error_of([&] { Checkpoint::open(write_zip("dag40.ckpt", dag(40), 48)); }),
              HasSubstr("dag40.ckpt: 'k.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0' in archive/data.pkl is "
                        "nested more than 32 containers deep"));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THAT(error_of([&] { Checkpoint::open(write_zip("dag24.ckpt", dag(24), 48)); }),
              HasSubstr("dag24.ckpt: archive/data.pkl refers to its containers more than 4194304 times over"));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
  EXPECT_EQ(Checkpoint::open(write_zip("dag12.ckpt", dag(12), 48))->size(), 0u);
}

TEST_F(BadFile, ContainerInsideItself) {
  // {'k': [<itself>]}: a list appended to itself.
  const std::string q = std::string("\x80\x02}", 3) + pickled_str("k") + std::string("]q\x01h\x01" "as.", 8);
  EXPECT_THAT(error_of([&] { Checkpoint::open(write_zip("cycle.ckpt", q, 48)); }),
              HasSubstr("cycle.ckpt: 'k.0' in archive/data.pkl holds itself"));
}
