// The "fourier" generator (see fourier.h): Lucid's fft_image followed by to_valid_rgb(decorrelate, sigmoid).
// ref: tensorflow/lucid@a40d0e411eee8c18a2e2ca1958383049354478c3 lucid/optvis/param/spatial.py (fft_image)
// ref: tensorflow/lucid@a40d0e411eee8c18a2e2ca1958383049354478c3 lucid/optvis/param/color.py (to_valid_rgb)
// Shapes: B batch, H x W image, F = W / 2 + 1 rfft frequencies, 2 real and imaginary parts.
#include "generators/fourier.h"

#include "core/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/einsum.h>
#include <ATen/ops/fft_irfft2.h>
#include <ATen/ops/fft_rfft2.h>
#include <ATen/ops/linalg_inv.h>
#include <ATen/ops/logit.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/view_as_complex.h>
#include <ATen/ops/view_as_real.h>
#include <ATen/ops/where.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>

namespace clipguide::generators {

namespace {

// Lucid divides the image by 4 after the inverse FFT ("magic"): with std 0.01 spectra it keeps the initial
// image near grey; kept so that learning rates tuned for Lucid carry over.
constexpr double kLucidDivisor = 4.0;
// Images are clamped to [kEps, 1 - kEps] before the logit, which keeps it finite (as in the pixel generator).
constexpr double kEps = 1e-3;

bool parse_bool(const std::map<std::string, std::string>& extra, const std::string& key, bool fallback) {
  auto it = extra.find(key);
  if (it == extra.end()) return fallback;
  if (it->second == "1" || it->second == "true") return true;
  if (it->second == "0" || it->second == "false") return false;
  throw Error("fourier generator: extra[\"" + key + "\"] = '" + it->second + "': expected 1, 0, true or false");
}

// (B', 3, H, W) colours: out[b, c] = sum_k m[c, k] * x[b, k] (Lucid: t_flat @ m.T).
at::Tensor apply_color_matrix(const at::Tensor& m, const at::Tensor& x) { return at::einsum("ck,bkhw->bchw", {m, x}); }

}  // namespace

FourierOptions FourierOptions::from_extra(const std::map<std::string, std::string>& extra) {
  FourierOptions options;
  options.decay_power = extra_number(extra, "decay_power", options.decay_power, "fourier");
  options.init_std = extra_number(extra, "init_std", options.init_std, "fourier");
  options.decorrelate = parse_bool(extra, "decorrelate", options.decorrelate);
  if (options.init_std < 0) {
    throw Error("fourier generator: extra[\"init_std\"] must be >= 0; got " + std::to_string(options.init_std));
  }
  return options;
}

at::Tensor FourierGenerator::rfft2d_freqs(int64_t height, int64_t width) {
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  // numpy's fftfreq(h): 0, 1, ..., (h - 1) / 2, then -(h / 2), ..., -1, all divided by h.
  auto iy = at::arange(height, f64);                                                // (H)
  auto fy = at::where(iy <= (height - 1) / 2, iy, iy - height).div(height);        // (H)
  // fftfreq(w)[: w / 2 + 1]; only the magnitude matters, so the non-negative rfftfreq is the same.
  auto fx = at::arange(width / 2 + 1, f64).div(width);                             // (F)
  return (fy.unsqueeze(1).square() + fx.unsqueeze(0).square()).sqrt().to(at::kFloat);  // (H, F)
}

at::Tensor FourierGenerator::color_correlation() {
  // ImageNet colour correlation's square root (Lucid's color_correlation_svd_sqrt), float32 as in Lucid.
  auto m = at::tensor({0.26f, 0.09f, 0.02f, 0.27f, 0.00f, -0.05f, 0.27f, -0.09f, 0.03f}).view({3, 3});
  auto max_column_norm = m.square().sum(0).sqrt().max();  // Lucid: max(norm(m, axis=0))
  return m / max_column_norm;                             // (3, 3)
}

FourierGenerator::FourierGenerator(const GeneratorOptions& options)
    : fourier_options_(FourierOptions::from_extra(options.extra)),
      batch_(options.batch),
      height_(options.height),
      width_(options.width),
      device_(options.device),
      latent_("fourier generator", options.device) {
  check_image_size(options, "fourier");
  // Lucid: 1 / max(freqs, 1 / max(h, w))^decay_power, computed in float64 and used as float32. Lucid's extra
  // sqrt(w * h) and TF's 1 / (h * w) in irfft2d together are the "ortho" normalisation used in render().
  auto freqs = rfft2d_freqs(height_, width_).to(at::kDouble);                                      // (H, F)
  auto scale = freqs.clamp_min(1.0 / std::max(height_, width_)).pow(fourier_options_.decay_power).reciprocal();
  scale_ = scale.to(at::kFloat).view({1, 1, height_, width_ / 2 + 1, 1}).to(device_);  // (1, 1, H, F, 1)
  color_ = color_correlation().to(device_);                                            // (3, 3)
  init_random(options.seed);
}

at::Tensor FourierGenerator::render() {
  auto scaled = (spectrum() * scale_).contiguous();  // (B, 3, H, F, 2)
  auto image = at::fft_irfft2(at::view_as_complex(scaled), c10::IntArrayRef{height_, width_}, {-2, -1}, "ortho");
  image = image / kLucidDivisor;                                       // (B, 3, H, W) decorrelated colours
  if (fourier_options_.decorrelate) image = apply_color_matrix(color_, image);  // (B, 3, H, W) RGB logits
  return at::sigmoid(image);                                           // (B, 3, H, W) in (0, 1)
}

void FourierGenerator::init_from_image(const at::Tensor& image) {
  at::NoGradGuard no_grad;
  auto x = init_image_to_size(image, batch_, height_, width_, device_, "fourier");  // (B or 1, 3, H, W)
  x = at::logit(x.clamp(kEps, 1 - kEps));  // (B or 1, 3, H, W) RGB logits
  if (fourier_options_.decorrelate) x = apply_color_matrix(at::linalg_inv(color_), x);
  auto spectrum = at::fft_rfft2(x * kLucidDivisor, c10::IntArrayRef{height_, width_}, {-2, -1}, "ortho");  // (B or 1, 3, H, F) complex
  latent_.set("spectrum", (at::view_as_real(spectrum) / scale_).expand({batch_, -1, -1, -1, -1}));  // (B, 3, H, F, 2)
}

void FourierGenerator::init_random(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto spectrum = at::randn({batch_, 3, height_, width_ / 2 + 1, 2}, gen, at::TensorOptions().dtype(at::kFloat));
  latent_.set("spectrum", spectrum * fourier_options_.init_std);  // (B, 3, H, F, 2)
}

CLIPGUIDE_REGISTER_GENERATOR("fourier", FourierGenerator);

}  // namespace clipguide::generators
