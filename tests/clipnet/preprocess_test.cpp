// Tests for clipnet/preprocess and clipnet/image_io against PIL and openai-clip's preprocess
// (fixture tests/reference/preprocess.py), plus round trips, atomic writes and error messages.
#include "clipnet/preprocess.h"

#include "core/error.h"
#include "core/image_io.h"
#include "core/io/safetensors.h"
#include "test_util.h"

#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/zeros.h>

#include <fstream>

namespace clipguide::clipnet {
namespace {

using test::fixture_dir;

TEST(Preprocess, ResizedShortestMatchesTorchvision) {
  // torchvision Resize(224): short side 224, long side int(224 * long / short).
  EXPECT_EQ((resized_shortest(200, 300, 224)), (std::array<int64_t, 2>{224, 336}));
  EXPECT_EQ((resized_shortest(331, 97, 224)), (std::array<int64_t, 2>{764, 224}));
  EXPECT_EQ((resized_shortest(100, 100, 64)), (std::array<int64_t, 2>{64, 64}));
}

TEST(ImageIo, ReadsLikePilConvertRgb) {
  if (!image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = fixture_dir("preprocess");
  auto expected = read_safetensors(dir / "expected.safetensors").tensors;
  for (std::string name : {"landscape", "tall", "alpha", "grey", "small", "exact", "photo"}) {
    SCOPED_TRACE(name);
    std::string file = name == "photo" ? "photo.jpg" : name + ".png";
    at::Tensor got = read_image(dir / file);
    ASSERT_TRUE(got.sizes().equals(expected.at(name + ".rgb").sizes())) << shape_str(got.sizes());
    // JPEG decoders may differ by a level (IDCT); lossless formats must be exact.
    double tol = name == "photo" ? 2.0 : 0.0;
    EXPECT_TENSOR_CLOSE(got.to(at::kFloat), expected.at(name + ".rgb").to(at::kFloat), tol, 0.0);
  }
}

TEST(Preprocess, FileMatchesOpenAiClipPreprocess) {
  if (!image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = fixture_dir("preprocess");
  auto expected = read_safetensors(dir / "expected.safetensors").tensors;
  for (std::string name : {"landscape", "tall", "alpha", "grey", "small", "exact", "photo"}) {
    for (int64_t size : {224, 64}) {
      SCOPED_TRACE(name + " @" + std::to_string(size));
      std::string file = name == "photo" ? "photo.jpg" : name + ".png";
      at::Tensor got = preprocess_file(dir / file, size, kOpenAiMean, kOpenAiStd);
      const at::Tensor& want = expected.at(name + ".clip" + std::to_string(size));
      // PIL resamples in fixed point and sometimes vertically first; we resample in float, horizontally
      // first, rounding like it. A pixel may land one grey level off: 1/255 / std ≈ 0.015 after
      // normalisation (0.03 for JPEG, whose decoders differ); up to ~30% of pixels may be off by one.
      double tol = (name == "photo" ? 2.5 : 1.01) / 255.0 / kOpenAiStd[1];
      if (name == "alpha") {
        // Unpremultiplying divides by alpha: where alpha is a few levels, one level of premultiplied
        // rounding becomes tens of colour levels. Allow that on at most 0.1% of values.
        double over = ((got - want).abs() > tol).to(at::kDouble).mean().item<double>();
        EXPECT_LT(over, 1e-3) << "fraction of values more than one grey level off";
      } else {
        EXPECT_TENSOR_CLOSE(got, want, tol, 0.0);
      }
      double mean_diff = (got - want).abs().mean().item<double>();
      EXPECT_LT(mean_diff, 6e-3) << "mean abs diff";
      std::cout << "  [mean abs diff " << mean_diff << "]\n";
    }
  }
}

TEST(Preprocess, TensorPathIsDifferentiable) {
  auto image = at::rand({2, 3, 40, 56}, at::kDouble).requires_grad_(true);
  auto out = preprocess_tensor(image, 16, kOpenAiMean, kOpenAiStd);
  ASSERT_EQ(shape_str(out.sizes()), "[2, 3, 16, 16]");
  auto weights = at::rand_like(out);
  (out * weights).sum().backward();
  // Finite differences on a few pixels: the map is linear, so central differences are exact-ish.
  auto grad = image.grad();
  for (int64_t idx : {0, 777, 4000, 13000}) {
    auto flat = image.detach().clone().flatten();
    double eps = 1e-4;
    auto plus = flat.clone(); plus[idx] += eps;
    auto minus = flat.clone(); minus[idx] -= eps;
    double fp = (preprocess_tensor(plus.view_as(image), 16, kOpenAiMean, kOpenAiStd) * weights).sum().item<double>();
    double fm = (preprocess_tensor(minus.view_as(image), 16, kOpenAiMean, kOpenAiStd) * weights).sum().item<double>();
    EXPECT_NEAR(grad.flatten()[idx].item<double>(), (fp - fm) / (2 * eps), 1e-6) << "pixel " << idx;
  }
}

TEST(Preprocess, RejectsBadShapes) {
  EXPECT_THROW(preprocess_tensor(at::rand({1, 4, 8, 8}), 8, kOpenAiMean, kOpenAiStd), std::exception);
  EXPECT_THROW(preprocess_uint8(at::rand({3, 8, 8}), 8, kOpenAiMean, kOpenAiStd), std::exception);
}

TEST(ImageIo, WriteReadRoundTripWithMetadata) {
  if (!image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = test::temp_dir();
  auto image = at::randint(0, 256, {3, 17, 23}, at::kByte);
  write_image(dir / "out.png", image, {{"clipguide:prompt", "a red circle | blue:0.5"}});
  EXPECT_TRUE(at::equal(read_image(dir / "out.png"), image));
  EXPECT_EQ(read_image_metadata(dir / "out.png").at("clipguide:prompt"), "a red circle | blue:0.5");
  // Only the finished file is left: the temporary was renamed.
  int files = 0;
  for (auto& entry : std::filesystem::directory_iterator(dir)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
  // Float images in [0, 1] are rounded.
  write_image(dir / "f.png", image.to(at::kFloat) / 255.0);
  EXPECT_TRUE(at::equal(read_image(dir / "f.png"), image));
}

TEST(ImageIo, ErrorsNameTheFile) {
  if (!image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = test::temp_dir();
  try {
    read_image(dir / "missing.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.png"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "corrupt.png") << "\x89PNG\r\n\x1a\n this is not a png";
  try {
    read_image(dir / "corrupt.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt.png"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_image(dir / "no" / "such" / "dir.png", at::zeros({3, 4, 4}, at::kByte)), Error);
  EXPECT_THROW(write_image(dir / "x.png", at::zeros({4, 4}, at::kByte)), Error);
}

}  // namespace
}  // namespace clipguide::clipnet
