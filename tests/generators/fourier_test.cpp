// Tests for the "fourier" generator (generators/fourier.cpp): parity with Lucid's fft_image + to_valid_rgb
// (tests/reference/fourier.py, a numpy transcription), closed-form checks of the scaling and the inverse FFT,
// gradients, init_from_image, seeds, state and a short optimisation.
// Shapes: B batch, H x W image, F = W / 2 + 1 rfft frequencies, 2 real and imaginary parts.
#include "core/error.h"
#include "core/io/safetensors.h"
#include "generators/fourier.h"
#include "generators/generator.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <cmath>
#include <iostream>

namespace clipguide::generators {
namespace {

using test::error_of;

using test::fixture_dir;
using test::max_abs_diff;

GeneratorOptions options_for(int64_t height, int64_t width, int64_t batch, uint64_t seed = 3) {
  GeneratorOptions options;
  options.height = height;
  options.width = width;
  options.batch = batch;
  options.seed = seed;
  return options;
}

TEST(FourierGenerator, RegisteredRendersInUnitRange) {
  auto names = GeneratorRegistry::names();
  EXPECT_NE(std::find(names.begin(), names.end(), "fourier"), names.end());
  auto generator = GeneratorRegistry::create("fourier", options_for(12, 20, 2));
  EXPECT_EQ(generator->name(), "fourier");
  EXPECT_EQ(generator->size_factor(), 1);
  EXPECT_EQ(generator->latent_shape(), (std::vector<int64_t>{2, 3, 12, 11, 2}));
  auto image = generator->render();  // (2, 3, 12, 20)
  EXPECT_EQ(image.sizes().vec(), (std::vector<int64_t>{2, 3, 12, 20}));
  EXPECT_GT(image.min().item<float>(), 0.0f);
  EXPECT_LT(image.max().item<float>(), 1.0f);
  // Lucid's sd 0.01 starts near grey.
  EXPECT_LT((image - 0.5).abs().max().item<float>(), 0.1f);
}

TEST(FourierGenerator, MatchesLucid) {
  auto expected = clipguide::read_safetensors(fixture_dir("fourier") / "expected.safetensors").tensors;
  std::cout << "color_correlation max abs diff "
            << max_abs_diff(FourierGenerator::color_correlation(), expected.at("color_correlation")) << "\n";
  EXPECT_TENSOR_CLOSE(FourierGenerator::color_correlation(), expected.at("color_correlation"), 1e-7, 0);
  for (std::string c : {"a", "b"}) {
    SCOPED_TRACE("case " + c);
    auto size = expected.at(c + ".size");  // height, width, batch
    auto options = options_for(size[0].item<int64_t>(), size[1].item<int64_t>(), size[2].item<int64_t>());
    options.extra["decay_power"] = std::to_string(expected.at(c + ".decay_power").item<double>());
    FourierGenerator generator(options);
    EXPECT_TENSOR_CLOSE(FourierGenerator::rfft2d_freqs(options.height, options.width), expected.at(c + ".freqs"), 1e-7, 0);
    EXPECT_TENSOR_CLOSE(generator.scale().squeeze(-1).squeeze(1).squeeze(0), expected.at(c + ".scale"), 0, 1e-6);
    generator.load_state({{"spectrum", expected.at(c + ".spectrum")}});
    auto image = generator.render();  // (B, 3, H, W)
    std::cout << "case " << c << " render max abs diff " << max_abs_diff(image, expected.at(c + ".render")) << "\n";
    EXPECT_TENSOR_CLOSE(image, expected.at(c + ".render"), 1e-5, 0);
  }
}

// One coefficient X = a + ib at (ky, kx), 0 < kx < W / 2, is the cosine 2 |X| cos(2 pi (ky y / H + kx x / W) +
// arg X) / sqrt(H W) after an orthonormal inverse rfft2; the generator scales it and divides by Lucid's 4.
TEST(FourierGenerator, SingleCoefficientIsScaledCosine) {
  const int64_t h = 12, w = 16, ky = 2, kx = 3;
  for (double decay_power : {0.0, 1.0, 2.0}) {
    SCOPED_TRACE("decay_power " + std::to_string(decay_power));
    auto options = options_for(h, w, 1);
    options.extra = {{"decay_power", std::to_string(decay_power)}, {"decorrelate", "0"}};
    FourierGenerator generator(options);
    auto spectrum = at::zeros({1, 3, h, w / 2 + 1, 2});  // (1, 3, H, F, 2)
    spectrum[0][1][ky][kx][0] = 0.3;
    spectrum[0][1][ky][kx][1] = -0.4;
    generator.load_state({{"spectrum", spectrum}});
    auto logits = at::logit(generator.render().detach().to(at::kDouble));  // (1, 3, H, W)
    const double freq = std::sqrt(double(ky * ky) / (h * h) + double(kx * kx) / (w * w));
    const double scale = 1.0 / std::pow(std::max(freq, 1.0 / std::max(h, w)), decay_power);
    EXPECT_NEAR(generator.scale()[0][0][ky][kx][0].item<double>(), scale, 1e-6 * scale);
    auto y = at::arange(h, at::kDouble).view({h, 1});
    auto x = at::arange(w, at::kDouble).view({1, w});
    auto phase = 2 * M_PI * (y * ky / double(h) + x * kx / double(w)) + std::atan2(-0.4, 0.3);
    auto cosine = phase.cos() * (2 * 0.5 * scale / std::sqrt(double(h * w)) / 4.0);  // |X| = 0.5
    EXPECT_TENSOR_CLOSE(logits[0][1], cosine, 2e-5, 1e-4);
    EXPECT_TENSOR_CLOSE(logits[0][0], at::zeros({h, w}, at::kDouble), 1e-6, 0);
  }
  // DC: 1 / max(0, 1 / max(h, w))^p = max(h, w)^p.
  auto options = options_for(h, w, 1);
  options.extra["decay_power"] = "1.5";
  FourierGenerator generator(options);
  EXPECT_NEAR(generator.scale()[0][0][0][0][0].item<double>(), std::pow(16.0, 1.5), 1e-3);
}

TEST(FourierGenerator, ColorMatrixIsLucidsNormalisedSqrt) {
  auto m = FourierGenerator::color_correlation().to(at::kDouble);  // (3, 3)
  auto column_norms = m.square().sum(0).sqrt();                    // (3)
  EXPECT_NEAR(column_norms.max().item<double>(), 1.0, 1e-6);
  // Proportional to Lucid's color_correlation_svd_sqrt.
  auto lucid = at::tensor({0.26, 0.09, 0.02, 0.27, 0.00, -0.05, 0.27, -0.09, 0.03}, at::kDouble).view({3, 3});
  EXPECT_TENSOR_CLOSE(m * lucid.square().sum(0).sqrt().max(), lucid, 1e-6, 0);
  // render() maps a constant decorrelated logit v to M v per pixel.
  auto options = options_for(4, 6, 1);
  options.extra["decay_power"] = "0";
  FourierGenerator generator(options);
  auto spectrum = at::zeros({1, 3, 4, 4, 2});
  const double v[3] = {1.0, -0.5, 0.25};
  for (int c = 0; c < 3; ++c) spectrum[0][c][0][0][0] = v[c] * 4.0 * std::sqrt(24.0);  // DC, ortho, Lucid's 4
  generator.load_state({{"spectrum", spectrum}});
  auto logits = at::logit(generator.render().detach().to(at::kDouble))[0];  // (3, 4, 6)
  auto expected = at::matmul(m, at::tensor({v[0], v[1], v[2]}, at::kDouble));  // (3)
  EXPECT_TENSOR_CLOSE(logits, expected.view({3, 1, 1}).expand({3, 4, 6}), 1e-5, 0);
}

// Directional finite difference of L = sum(w * render) in float, against the autograd gradient.
TEST(FourierGenerator, GradientReachesSpectrum) {
  FourierGenerator generator(options_for(10, 14, 2));
  auto spectrum = at::randn({2, 3, 10, 8, 2}) * 0.5;
  generator.load_state({{"spectrum", spectrum}});
  auto weight = at::randn({2, 3, 10, 14});
  (generator.render() * weight).sum().backward();
  auto grad = generator.spectrum().grad();  // (2, 3, 10, 8, 2)
  ASSERT_TRUE(grad.defined());
  EXPECT_TRUE(grad.isfinite().all().item<bool>());
  EXPECT_GT(grad.abs().max().item<float>(), 0.0f);
  auto direction = at::randn_like(spectrum);
  const double eps = 1e-2;
  auto loss_at = [&](const at::Tensor& s) {
    at::NoGradGuard no_grad;
    generator.load_state({{"spectrum", s}});
    return (generator.render().to(at::kDouble) * weight.to(at::kDouble)).sum().item<double>();
  };
  const double numeric = (loss_at(spectrum + eps * direction) - loss_at(spectrum - eps * direction)) / (2 * eps);
  const double analytic = (grad.to(at::kDouble) * direction.to(at::kDouble)).sum().item<double>();
  std::cout << "directional derivative: autograd " << analytic << ", finite difference " << numeric << "\n";
  EXPECT_NEAR(analytic, numeric, 1e-2 * std::abs(numeric) + 1e-3);
}

TEST(FourierGenerator, InitFromImageReconstructs) {
  for (auto [h, w] : {std::pair<int64_t, int64_t>{24, 32}, {15, 21}}) {  // even and odd sizes
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w));
    FourierGenerator generator(options_for(h, w, 2));
    auto y = at::linspace(0, 1, h).view({1, 1, h, 1});
    auto x = at::linspace(0, 1, w).view({1, 1, 1, w});
    auto phase = at::tensor({0.0f, 1.0f, 2.0f}).view({1, 3, 1, 1});
    auto image = 0.5 + 0.35 * at::sin(3 * x + 2 * y + phase) * at::cos(2 * y - x);  // (1, 3, H, W) smooth
    generator.init_from_image(image);
    auto rendered = generator.render().detach();  // (2, 3, H, W)
    const double mean_error = (rendered - image).abs().mean().item<double>();
    std::cout << h << "x" << w << " init_from_image: mean abs error " << mean_error << ", max "
              << max_abs_diff(rendered, image.expand({2, 3, h, w})) << "\n";
    EXPECT_LT(mean_error, 0.02);
    EXPECT_TENSOR_CLOSE(rendered, image.expand({2, 3, h, w}), 1e-4, 0);
  }
  FourierGenerator generator(options_for(12, 20, 2));
  generator.init_from_image(at::rand({1, 3, 30, 40}));  // resized
  EXPECT_EQ(generator.render().sizes().vec(), (std::vector<int64_t>{2, 3, 12, 20}));
  auto message = error_of([&] { generator.init_from_image(at::rand({3, 3, 12, 20})); });
  EXPECT_NE(message.find("got [3, 3, 12, 20]"), std::string::npos) << message;
}

TEST(FourierGenerator, SeedDeterminesSpectrum) {
  FourierGenerator a(options_for(16, 16, 2, 7)), b(options_for(16, 16, 2, 7)), c(options_for(16, 16, 2, 8));
  EXPECT_TRUE(a.spectrum().equal(b.spectrum()));
  EXPECT_FALSE(a.spectrum().equal(c.spectrum()));
  EXPECT_NEAR(a.spectrum().std().item<double>(), 0.01, 0.001);  // Lucid's sd
  a.init_random(8);
  EXPECT_TRUE(a.spectrum().equal(c.spectrum()));
  auto options = options_for(16, 16, 1);
  options.extra["init_std"] = "0.5";
  EXPECT_NEAR(FourierGenerator(options).spectrum().std().item<double>(), 0.5, 0.05);
}

TEST(FourierGenerator, BadSettingsAreErrors) {
  auto options = options_for(8, 8, 1);
  options.extra["decay_power"] = "steep";
  auto message = error_of([&] { FourierGenerator generator(options); });
  EXPECT_NE(message.find("decay_power"), std::string::npos) << message;
  options.extra = {{"decorrelate", "maybe"}};
  EXPECT_THROW(FourierGenerator generator(options), Error);
  options.extra = {{"init_std", "-1"}};
  EXPECT_THROW(FourierGenerator generator(options), Error);
  EXPECT_THROW(FourierGenerator generator(options_for(0, 8, 1)), Error);
}

TEST(FourierGenerator, StateRoundTrip) {
  FourierGenerator a(options_for(12, 20, 2)), b(options_for(12, 20, 2));
  auto saved = a.state();
  ASSERT_EQ(saved.count("spectrum"), 1u);
  auto held = a.parameters()[0];
  a.init_random(4);
  EXPECT_FALSE(a.render().equal(b.render()));
  a.load_state(saved);
  EXPECT_TRUE(a.render().equal(b.render()));
  EXPECT_TRUE(held.is_same(a.parameters()[0]));  // loaded in place: optimisers keep their tensor
  auto message = error_of([&] { a.load_state({{"spectrum", at::zeros({1, 3, 12, 11, 2})}}); });
  EXPECT_NE(message.find("got [1, 3, 12, 11, 2], expected [2, 3, 12, 11, 2]"), std::string::npos) << message;
  EXPECT_THROW(a.load_state({}), Error);
}

TEST(FourierGenerator, AdamStepsReduceColourLoss) {
  FourierGenerator generator(options_for(16, 24, 1));
  auto target = at::tensor({0.8f, 0.2f, 0.4f}).view({1, 3, 1, 1}).expand({1, 3, 16, 24});
  torch::optim::Adam adam(generator.parameters(), torch::optim::AdamOptions(0.1));
  auto loss = [&] { return at::mse_loss(generator.render(), target); };
  // A flat colour lives in the DC coefficients only, and a saturated one needs large values along the weak axes
  // of the decorrelated colour space: slow for Lucid's parametrisation, whose own runs take hundreds of steps.
  constexpr int kSteps = 100;
  const double before = loss().item<double>();
  for (int step = 0; step < kSteps; ++step) {
    adam.zero_grad();
    loss().backward();
    adam.step();
    generator.post_step();
  }
  const double after = loss().item<double>();
  std::cout << "colour MSE " << before << " -> " << after << " after " << kSteps << " Adam steps\n";
  EXPECT_LT(after, 0.5 * before);
}

}  // namespace
}  // namespace clipguide::generators
