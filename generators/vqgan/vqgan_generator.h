// The "vqgan" generator: a taming VQGAN decoder driven by a continuous latent z, rendered the way
// VQGAN+CLIP's synth() does (z vector-quantised against the codebook with a straight-through gradient,
// decoded, clamped to [0, 1] with clamp_with_grad). Options: weights (required), config (optional YAML),
// autocast (the decoder only: quantisation keeps fp32 distances) and channels_last.
//
// Shapes: B batch, H x W image, h x w latent grid (H / f, W / f), E embed_dim, N n_embed.
#pragma once

#include "generators/generator.h"
#include "generators/latent_tensors.h"
#include "generators/vqgan/vq_model.h"

namespace clipguide::generators::vqgan {

class VqganGenerator : public Generator {
 public:
  // Loads the model from options.weights (and options.config); latent (batch, E, height / f, width / f)
  // with f = size_factor(), initialised by init_random(options.seed). Throws clipguide::Error when the
  // weights are missing or the size is smaller than f.
  explicit VqganGenerator(const GeneratorOptions& options);
  // Wraps an already loaded model (tests, programs holding several generators on one model); the latent
  // lives on the model's device (options.device, weights and config are not used). With
  // options.channels_last the model's convolution weights are converted in place.
  VqganGenerator(VQModel model, const GeneratorOptions& options);

  std::string name() const override { return "vqgan"; }
  std::vector<at::Tensor> parameters() override { return latent_.all(); }
  at::Tensor render() override;  // (B, 3, H, W) in [0, 1]
  void init_from_image(const at::Tensor& image) override;
  void init_random(uint64_t seed) override;
  std::vector<int64_t> latent_shape() const override { return z().sizes().vec(); }
  int64_t size_factor() const override { return model_->config().size_factor(); }
  void post_step() override;  // clamps z to the codebook's per-channel range
  TensorMap state() const override { return latent_.state(); }  // {"z": (B, E, h, w)}
  void load_state(const TensorMap& state) override { latent_.load(state); }
  // The same VQModel (shared, not copied) with its own latent, size and checkpointing.
  std::unique_ptr<Generator> rebuilt(const GeneratorOptions& options) const override {
    return std::make_unique<VqganGenerator>(model_, options);
  }

  VQModel& model() { return model_; }
  const at::Tensor& z() const { return latent_.at("z"); }  // (B, E, h, w), requires_grad
  const at::Tensor& z_min() const { return z_min_; }  // (1, E, 1, 1) per-channel codebook minimum
  const at::Tensor& z_max() const { return z_max_; }  // (1, E, 1, 1) per-channel codebook maximum

 private:

  VQModel model_;
  int64_t batch_, grid_h_, grid_w_;  // B, h, w
  LatentTensors latent_;             // "z": (B, E, h, w)
  at::Tensor z_min_, z_max_;         // (1, E, 1, 1)
  at::ScalarType autocast_;          // GeneratorOptions::autocast
  bool channels_last_;               // GeneratorOptions::channels_last
  bool checkpoint_;                  // GeneratorOptions::checkpoint (set on the shared decoder per render)
};

}  // namespace clipguide::generators::vqgan
