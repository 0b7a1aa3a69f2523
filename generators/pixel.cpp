// The "pixel" generator: one logit per pixel and channel, rendered through a sigmoid. No model, no weights:
// the fastest generator, for tests and for guidance experiments at small sizes.
// Shapes: B batch, H x W image.
#include "clipnet/error.h"
#include "generators/generator.h"

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
      : batch_(options.batch), height_(options.height), width_(options.width), device_(options.device) {
    check_image_size(options, "pixel");
    init_random(options.seed);
  }

  std::string name() const override { return "pixel"; }
  std::vector<at::Tensor> parameters() override { return {logits_}; }
  at::Tensor render() override { return at::sigmoid(logits_); }  // (B, 3, H, W) in (0, 1)

  void init_from_image(const at::Tensor& image) override {
    at::NoGradGuard no_grad;
    auto x = init_image_to_size(image, batch_, height_, width_, device_, "pixel");  // (B or 1, 3, H, W)
    set_logits(at::logit(x.clamp(kEps, 1 - kEps)).expand({batch_, -1, -1, -1}));
  }

  void init_random(uint64_t seed) override {
    auto gen = at::detail::createCPUGenerator(seed);
    set_logits(at::randn({batch_, 3, height_, width_}, gen, at::TensorOptions().dtype(at::kFloat)));  // (B, 3, H, W)
  }

  std::vector<int64_t> latent_shape() const override { return {batch_, 3, height_, width_}; }
  TensorMap state() const override { return {{"logits", logits_.detach().clone()}}; }

  void load_state(const TensorMap& state) override {
    auto it = state.find("logits");
    if (it == state.end()) throw Error("pixel generator state: no 'logits' tensor");
    if (!it->second.sizes().equals(logits_.sizes())) {
      throw Error("pixel generator state: 'logits': got " + shape_str(it->second.sizes()) + ", expected " +
                  shape_str(logits_.sizes()));
    }
    set_logits(it->second);
  }

 private:
  void set_logits(const at::Tensor& logits) {
    if (logits_.defined()) {
      at::NoGradGuard no_grad;
      logits_.copy_(logits);  // in place: an optimiser holding parameters() keeps working
      return;
    }
    logits_ = logits.detach().to(device_, at::kFloat).contiguous().clone().set_requires_grad(true);
  }

  int64_t batch_, height_, width_;  // B, H, W
  c10::Device device_;
  at::Tensor logits_;  // (B, 3, H, W)
};

}  // namespace

CLIPGUIDE_REGISTER_GENERATOR("pixel", PixelGenerator);

}  // namespace clipguide::generators
