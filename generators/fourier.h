// The "fourier" generator: Lucid's FFT image parametrisation. The parameters are a 2-D real FFT spectrum per
// image and channel; render() scales it by 1 / frequency^decay_power, inverts the FFT, maps colours through
// Lucid's decorrelation matrix and applies a sigmoid. No model, no weights.
//
// Shapes: B batch, H x W image, F = W / 2 + 1 frequencies along the width (rfft), 2 real and imaginary parts.
#pragma once

#include "generators/generator.h"
#include "generators/latent_tensors.h"

#include <map>
#include <string>

namespace clipguide::generators {

// Settings read from GeneratorOptions::extra (keys in quotes); a value that does not parse is a clipguide::Error.
struct FourierOptions {
  double decay_power = 1.0;  // "decay_power": spectrum scaled by 1 / max(freq, 1 / max(W, H))^decay_power
  double init_std = 0.01;    // "init_std": standard deviation of init_random's normal spectrum (Lucid's sd)
  bool decorrelate = true;   // "decorrelate" ("1"/"0", "true"/"false"): Lucid's ImageNet colour decorrelation

  static FourierOptions from_extra(const std::map<std::string, std::string>& extra);
};

class FourierGenerator : public Generator {
 public:
  // Spectrum (batch, 3, height, width / 2 + 1, 2) on options.device, initialised by init_random(options.seed).
  // Throws clipguide::Error for a size or batch below 1 and for unparsable extra settings.
  explicit FourierGenerator(const GeneratorOptions& options);

  std::string name() const override { return "fourier"; }
  std::vector<at::Tensor> parameters() override { return latent_.all(); }
  at::Tensor render() override;  // (B, 3, H, W) in (0, 1)
  // Inverts render() (logit, inverse colour matrix, rfft2, divided by the scale): exact up to the clamp of
  // the image to [1e-3, 1 - 1e-3] before the logit and float rounding. Resizes other sizes to H x W first.
  void init_from_image(const at::Tensor& image) override;
  void init_random(uint64_t seed) override;  // normal spectrum with std init_std
  std::vector<int64_t> latent_shape() const override { return spectrum().sizes().vec(); }
  TensorMap state() const override { return latent_.state(); }  // {"spectrum": (B, 3, H, F, 2)}
  void load_state(const TensorMap& state) override { latent_.load(state); }
  std::unique_ptr<Generator> rebuilt(const GeneratorOptions& options) const override {
    return rebuilt_on<FourierGenerator>(device_, options);
  }

  const FourierOptions& fourier_options() const { return fourier_options_; }
  const at::Tensor& spectrum() const { return latent_.at("spectrum"); }  // (B, 3, H, F, 2), requires_grad
  const at::Tensor& scale() const { return scale_; }        // (1, 1, H, F, 1)

  // (H, F) |frequency| of each rfft2 coefficient in cycles per pixel: Lucid's rfft2d_freqs (even W).
  static at::Tensor rfft2d_freqs(int64_t height, int64_t width);
  // (3, 3) Lucid's color_correlation_normalized: the square root of ImageNet's colour covariance, divided by
  // its largest column norm. render() computes rgb = M @ decorrelated per pixel.
  static at::Tensor color_correlation();

 private:
  FourierOptions fourier_options_;
  int64_t batch_, height_, width_;  // B, H, W
  c10::Device device_;
  LatentTensors latent_;  // "spectrum": (B, 3, H, F, 2)
  at::Tensor scale_;     // (1, 1, H, F, 1)
  at::Tensor color_;     // (3, 3) color_correlation() on device_
};

}  // namespace clipguide::generators
