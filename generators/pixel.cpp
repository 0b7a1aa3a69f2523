// The "pixel" generator: one logit per pixel and channel, rendered through a sigmoid. No model, no weights:
// the fastest generator, for tests and for guidance experiments at small sizes.
// Shapes: B batch, H x W image.
#include "core/error.h"
#include "generators/generator.h"
#include "generators/latent_tensors.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/logit.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sigmoid.h>
#include <torch/csrc/autograd/grad_mode.h>

namespace clipguide::generators {

namespace {

// Images are clamped to [kEps, 1 - kEps] before the logit, which keeps it finite.
constexpr double kEps = 1e-3;

class PixelGenerator : public Generator {
 public:
  explicit PixelGenerator(const GeneratorOptions& options)
      : batch_(options.batch), height_(options.height), width_(options.width), device_(options.device),
        latent_("pixel generator", options.device) {
    check_image_size(options, "pixel");
    init_random(options.seed);
  }

  std::string name() const override { return "pixel"; }
  std::vector<at::Tensor> parameters() override { return latent_.all(); }
  at::Tensor render() override { return at::sigmoid(latent_.at("logits")); }  // (B, 3, H, W) in (0, 1)

  void init_from_image(const at::Tensor& image) override {
    at::NoGradGuard no_grad;
    auto x = init_image_to_size(image, batch_, height_, width_, device_, "pixel");  // (B or 1, 3, H, W)
    latent_.set("logits", at::logit(x.clamp(kEps, 1 - kEps)).expand({batch_, -1, -1, -1}));
  }

  void init_random(uint64_t seed) override {
    auto gen = at::detail::createCPUGenerator(seed);
    latent_.set("logits", at::randn({batch_, 3, height_, width_}, gen, at::TensorOptions().dtype(at::kFloat)));
  }

  std::vector<int64_t> latent_shape() const override { return {batch_, 3, height_, width_}; }
  TensorMap state() const override { return latent_.state(); }  // {"logits": (B, 3, H, W)}
  void load_state(const TensorMap& state) override { latent_.load(state); }
  std::unique_ptr<Generator> rebuilt(const GeneratorOptions& options) const override {
    return rebuilt_on<PixelGenerator>(device_, options);
  }

 private:
  int64_t batch_, height_, width_;  // B, H, W
  c10::Device device_;
  LatentTensors latent_;  // "logits": (B, 3, H, W)
};

}  // namespace

CLIPGUIDE_REGISTER_GENERATOR("pixel", PixelGenerator);

}  // namespace clipguide::generators
