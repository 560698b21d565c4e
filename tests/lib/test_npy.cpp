// The .npy reader and writer.
#include "npy.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <sys/stat.h>

#include "error.h"
#include "test_util.h"

using anitalker::DType;
using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

TEST(Npy, ReadsFixture) {
  anitalker::TensorData t = anitalker::read_npy(data("renderer/direction_Q.npy"));
  EXPECT_EQ(t.dtype, DType::Float32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{24, 20}));
  EXPECT_TRUE(t.is_contiguous());
}

TEST(Npy, RoundTripEveryDtype) {
  testutil::TempDir dir;
  std::vector<double> f64 = {1.5, -2.25, 3};
  std::vector<int64_t> i64 = {-1, 1LL << 50};
  std::vector<uint8_t> u8 = {0, 200, 255, 7};
  std::vector<float> f32(2 * 3 * 4);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<float>(i) * 0.5f;
  anitalker::write_npy(dir / "a.npy", DType::Float64, {3}, f64.data());
  anitalker::write_npy(dir / "b.npy", DType::Int64, {2, 1}, i64.data());
  anitalker::write_npy(dir / "c.npy", DType::UInt8, {2, 2}, u8.data());
  anitalker::write_npy(dir / "d.npy", DType::Float32, {2, 3, 4}, f32.data());
  anitalker::write_npy(dir / "e.npy", DType::Float32, {0, 4}, f32.data());
  EXPECT_EQ(anitalker::read_npy(dir / "a.npy").to_doubles(), f64);
  EXPECT_EQ(anitalker::read_npy(dir / "b.npy").to_doubles(), (std::vector<double>{-1, 1125899906842624.0}));
  EXPECT_EQ(anitalker::read_npy(dir / "c.npy").to_doubles(), (std::vector<double>{0, 200, 255, 7}));
  auto d = anitalker::read_npy(dir / "d.npy");
  EXPECT_EQ(d.shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(d.to_doubles()[23], 11.5);
  EXPECT_EQ(anitalker::read_npy(dir / "e.npy").numel(), 0);
  // numpy's layout: magic, version 1.0, header padded to 64 bytes.
  const std::string raw = testutil::slurp(dir / "d.npy");
  EXPECT_EQ(raw.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ((raw.size() - 24 * 4) % 64, 0u);
  EXPECT_THAT(raw, HasSubstr("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }"));
  EXPECT_THAT(testutil::slurp(dir / "a.npy"), HasSubstr("'shape': (3,), }"));
}

TEST(Npy, FortranOrderIsAStridedView) {
  testutil::TempDir dir;
  std::string hdr = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
  hdr.append(64 - (10 + hdr.size() + 1) % 64, ' ');
  hdr += '\n';
  std::string f("\x93NUMPY\x01\x00", 8);
  f += static_cast<char>(hdr.size());
  f += '\0';
  f += hdr;
  const float col_major[6] = {1, 4, 2, 5, 3, 6};
  f.append(reinterpret_cast<const char*>(col_major), sizeof col_major);
  testutil::spit(dir / "f.npy", f);
  EXPECT_EQ(anitalker::read_npy(dir / "f.npy").to_doubles(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

TEST(Npy, BadFiles) {
  testutil::TempDir dir;
  EXPECT_THAT(error_of([&] { anitalker::read_npy(dir / "none.npy"); }), HasSubstr("none.npy: no such file"));
  testutil::spit(dir / "magic.npy", "PK\x03\x04 zip");
  EXPECT_THAT(error_of([&] { anitalker::read_npy(dir / "magic.npy"); }), HasSubstr("magic.npy: not a .npy file (wrong magic number)"));
  std::vector<float> v(10, 1.f);
  const std::string good = anitalker::npy_bytes(DType::Float32, {10}, v.data());
  testutil::spit(dir / "short.npy", good.substr(0, good.size() - 4));
  EXPECT_THAT(error_of([&] { anitalker::read_npy(dir / "short.npy"); }), HasSubstr("short.npy: npy data too short for shape [10]"));
  std::string be = good;
  be.replace(be.find("<f4"), 3, ">f4");
  testutil::spit(dir / "be.npy", be);
  EXPECT_THAT(error_of([&] { anitalker::read_npy(dir / "be.npy"); }), HasSubstr("be.npy: unsupported npy dtype '>f4'"));
  testutil::spit(dir / "hdr.npy", good.substr(0, 30));
  EXPECT_THAT(error_of([&] { anitalker::read_npy(dir / "hdr.npy"); }), HasSubstr("hdr.npy: truncated .npy header"));
}

TEST(Npy, WriteFailsCleanly) {
  std::vector<float> v(4, 0.f);
  EXPECT_THAT(error_of([&] { anitalker::write_npy("/nonexistent-dir/x.npy", DType::Float32, {4}, v.data()); }),
              HasSubstr("/nonexistent-dir/x.npy: cannot write"));
}

// NpyWriter: the file written as its rows are made, the same bytes as
// write_npy of the whole; nothing at the target before commit(), nor after
// a wrong count (too little at commit, too much at append) or an exception.
TEST(Npy, WriterAppendsRowsAsWriteNpyWritesTheWhole) {
  testutil::TempDir dir;
  const auto exists = [](const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
  };
  std::vector<float> v(5 * 3);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * static_cast<float>(i) - 3.f;
  anitalker::write_npy(dir / "whole.npy", DType::Float32, {5, 3}, v.data());
  {
    anitalker::NpyWriter w(dir / "rows.npy", DType::Float32, {5, 3});
    for (int r = 0; r < 5; ++r) {
      EXPECT_FALSE(exists(dir / "rows.npy")) << r;
      w.append(v.data() + 3 * r, 3 * sizeof(float));
    }
    w.commit();
  }
  EXPECT_EQ(testutil::slurp(dir / "rows.npy"), testutil::slurp(dir / "whole.npy"));
  const anitalker::TensorData t = anitalker::read_npy(dir / "rows.npy");
  EXPECT_EQ(t.shape, (std::vector<int64_t>{5, 3}));
  {
    anitalker::NpyWriter w(dir / "short.npy", DType::Float32, {5, 3});
    w.append(v.data(), 4 * 3 * sizeof(float));
    EXPECT_THAT(error_of([&] { w.commit(); }), HasSubstr("short.npy: 48 bytes of data written, its shape holds 60"));
  }
  EXPECT_FALSE(exists(dir / "short.npy"));
  {
    anitalker::NpyWriter w(dir / "long.npy", DType::Float32, {1, 3});
    EXPECT_THAT(error_of([&] { w.append(v.data(), 4 * sizeof(float)); }),
                HasSubstr("long.npy: more data than its shape holds (16 bytes of 12)"));
  }
  EXPECT_FALSE(exists(dir / "long.npy"));
  // Empty: a (0, 3) array.
  {
    anitalker::NpyWriter w(dir / "empty.npy", DType::UInt8, {0, 3});
    w.commit();
  }
  EXPECT_EQ(anitalker::read_npy(dir / "empty.npy").shape, (std::vector<int64_t>{0, 3}));
  // No temporary file left beside them.
  int files = 0;
  DIR* d = ::opendir(dir.path().c_str());
  ASSERT_NE(d, nullptr);
  while (const dirent* e = ::readdir(d)) files += e->d_name[0] != '.' || std::string(e->d_name).size() > 2;
  ::closedir(d);
  EXPECT_EQ(files, 3);  // whole.npy, rows.npy, empty.npy
}

// A [planes, T, row] file given frame by frame ([n, planes, row] at a time,
// as HuBERT's streamed states come): the same bytes as write_npy of the
// whole transposed array, for appends of 0, 1 and several frames; nothing
// left beside it (its planes wait in temporary files); an error before
// commit() leaves no file; a device as the target takes it too.
TEST(Npy, PlaneMajorWriterTransposesFrames) {
  const auto run = [](const std::string& named_temporaries) {
    testutil::TempDir dir;
    if (!named_temporaries.empty()) ::setenv("ANITALKER_NAMED_TEMPORARIES", named_temporaries.c_str(), 1);
    const int64_t P = 3, R = 5, T = 11;
    std::vector<float> frames(T * P * R), planes(T * P * R);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t r = 0; r < R; ++r) {
          const float v = static_cast<float>(t * 100 + p * 10 + r) - 0.25f;
          frames[(t * P + p) * R + r] = v;
          planes[(p * T + t) * R + r] = v;
        }
    anitalker::write_npy(dir / "whole.npy", DType::Float32, {P, T, R}, planes.data());
    {
      anitalker::PlaneMajorNpyWriter w(dir / "states.npy", P, R);
      int64_t t = 0;
      for (int64_t n : {1, 0, 4, 2, 3, 1}) {
        w.append(frames.data() + t * P * R, n);
        t += n;
      }
      EXPECT_EQ(w.frames(), T);
      w.commit();
    }
    EXPECT_EQ(testutil::slurp(dir / "states.npy"), testutil::slurp(dir / "whole.npy")) << named_temporaries;
    {
      anitalker::PlaneMajorNpyWriter w(dir / "cut.npy", P, R);
      w.append(frames.data(), 2);
    }  // no commit: nothing
    {
      anitalker::PlaneMajorNpyWriter w(dir / "none.npy", P, R);
      w.commit();
    }
    EXPECT_EQ(anitalker::read_npy(dir / "none.npy").shape, (std::vector<int64_t>{P, 0, R}));
    {
      anitalker::PlaneMajorNpyWriter w("/dev/null", P, R);
      w.append(frames.data(), T);
      w.commit();
    }
    ::unsetenv("ANITALKER_NAMED_TEMPORARIES");
    int files = 0;
    DIR* d = ::opendir(dir.path().c_str());
    EXPECT_NE(d, nullptr);
    while (const dirent* e = d ? ::readdir(d) : nullptr) files += e->d_name[0] != '.' || std::string(e->d_name).size() > 2;
    if (d) ::closedir(d);
    EXPECT_EQ(files, 3) << named_temporaries;  // whole.npy, states.npy, none.npy
  };
  run("");
  run("1");
}
