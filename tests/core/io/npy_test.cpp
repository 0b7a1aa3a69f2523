// Tests for core/io/npy: numpy-written files of each supported dtype (and Fortran order) read
// bit-identically; written files round-trip and load in numpy; bad files give clear errors.
#include "core/io/npy.h"

#include "io_test_util.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/randn.h>

using namespace clipguide;
using namespace clipguide;
using clipguide::test::expect_error_containing;

TEST(Npy, ReadsNumpyFiles) {
  const auto dir = test::fixture_dir("weights_io");
  for (const std::string name : {"f32", "f64", "f16", "i64", "i32", "u8", "bool", "scalar", "empty", "fortran"}) {
    const std::string file = "npy_" + name + ".npy";
    test::expect_matches_manifest({{"array", read_npy(dir / file)}}, dir, file);
  }
}

TEST(Npy, RoundTripsAndLoadsInNumpy) {
  const auto tmp = test::temp_dir();
  const std::map<std::string, at::Tensor> arrays = {
      {"f32", at::arange(12, at::kFloat).view({3, 4}) / 7}, {"f64", at::arange(5, at::kDouble) - 2.5},
      {"f16", at::arange(6, at::kHalf).view({2, 3}) / 3},    {"i64", at::arange(4, at::kLong) * -1000000000000},
      {"i32", at::arange(6, at::kInt).view({1, 2, 3})},      {"u8", at::arange(256, at::kByte)},
      {"bool", at::arange(5, at::kLong) % 2 == 0},          {"scalar", at::arange(1, at::kFloat).reshape(c10::IntArrayRef{})},
      {"t", at::arange(6, at::kFloat).view({2, 3}).t()},
  };
  for (const auto& [name, t] : arrays) {
    write_npy(tmp / (name + ".npy"), t);
    const at::Tensor back = read_npy(tmp / (name + ".npy"));
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(back.equal(t)) << name;
  }
  if (test::python().empty()) GTEST_SKIP() << "CLIPGUIDE_PYTHON not set: numpy check of written files skipped";
  const std::string code = R"PY(
import sys, numpy as np
d = sys.argv[1]
want = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4) / np.float32(7), "f64": np.arange(5.0) - 2.5,
    "f16": np.arange(6, dtype=np.float16).reshape(2, 3) / np.float16(3), "i64": np.arange(4) * -1000000000000,
    "i32": np.arange(6, dtype=np.int32).reshape(1, 2, 3), "u8": np.arange(256, dtype=np.uint8),
    "bool": np.arange(5) % 2 == 0, "scalar": np.array(0.0, dtype=np.float32),
    "t": np.arange(6, dtype=np.float32).reshape(2, 3).T,
}
for k, w in want.items():
    a = np.load(f"{d}/{k}.npy")
    assert a.dtype == w.dtype and a.shape == w.shape, (k, a.dtype, w.dtype, a.shape, w.shape)
    assert np.array_equal(a, w), (k, a, w)
print("numpy: %d files identical" % len(want))
)PY";
  EXPECT_EQ(test::run_python(tmp / "check.py", code, "'" + tmp.string() + "'"), 0);
}

TEST(NpyErrors, UnsupportedAndCorruptFiles) {
  const auto dir = test::fixture_dir("weights_io");
  expect_error_containing([&] { read_npy(dir / "npy_bigendian.npy"); }, {"npy_bigendian.npy", "'>f4'", "not supported"});
  const auto tmp = test::temp_dir();
  expect_error_containing([&] { write_npy(tmp / "x.npy", at::randn({2}).to(at::kBFloat16)); }, {"BFloat16", "not supported"});
  test::write_file_text(tmp / "bad.npy", "not numpy at all");
  expect_error_containing([&] { read_npy(tmp / "bad.npy"); }, {"bad.npy", "magic"});
  const std::string good = test::read_file_text(dir / "npy_f32.npy");
  for (size_t n = 0; n < good.size(); ++n) {
    test::write_file_text(tmp / "cut.npy", good.substr(0, n));
    EXPECT_THROW(read_npy(tmp / "cut.npy"), Error) << "cut at " << n;
  }
  test::write_file_text(tmp / "long.npy", good + "xx");
  expect_error_containing([&] { read_npy(tmp / "long.npy"); }, {"got 50 bytes, expected 48"});
}
