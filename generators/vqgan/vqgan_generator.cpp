// The "vqgan" generator (see vqgan_generator.h).
// ref: nerdyrodent/VQGAN-CLIP generate.py (synth, random init, init_image, z_min/z_max clamp)
// Shapes: B batch, H x W image, h x w latent grid, E embed_dim, N n_embed.
#include "generators/vqgan/vqgan_generator.h"

#include "core/autocast.h"
#include "core/error.h"
#include "core/grad_ops.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/randint.h>
#include <torch/csrc/autograd/grad_mode.h>

namespace clipguide::generators::vqgan {

namespace {

VQModel load_model(const GeneratorOptions& options) {
  if (options.weights.empty()) {
    throw Error("vqgan generator: no weights given (options.weights: a taming .ckpt or .safetensors file)");
  }
  return load_vq_model(options.weights, {options.config, options.device});
}

}  // namespace

VqganGenerator::VqganGenerator(const GeneratorOptions& options) : VqganGenerator(load_model(options), options) {}

VqganGenerator::VqganGenerator(VQModel model, const GeneratorOptions& options)
    : model_(std::move(model)),
      latent_("vqgan generator", model_->codebook().device()),
      autocast_(options.autocast),
      channels_last_(options.channels_last),
      checkpoint_(options.checkpoint) {
  const int64_t f = size_factor();
  batch_ = options.batch;
  grid_h_ = options.height / f;  // VQGAN+CLIP: toksY = height // f
  grid_w_ = options.width / f;
  if (batch_ < 1 || grid_h_ < 1 || grid_w_ < 1) {
    throw Error("vqgan generator: need batch >= 1 and width, height >= " + std::to_string(f) + " (the model's factor); got " +
                std::to_string(options.width) + "x" + std::to_string(options.height) + ", batch " +
                std::to_string(batch_));
  }
  auto codebook = model_->codebook().detach();  // (N, E)
  const int64_t e = codebook.size(1);
  z_min_ = std::get<0>(codebook.min(0)).view({1, e, 1, 1});
  z_max_ = std::get<0>(codebook.max(0)).view({1, e, 1, 1});
  if (channels_last_) {
    at::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) {
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));  // conv weights (O, I, k, k)
    }
  }
  init_random(options.seed);
}

at::Tensor VqganGenerator::render() {
  auto z_q = vector_quantize(z(), model_->codebook());  // (B, E, h, w), gradient straight through to z
  if (channels_last_) z_q = z_q.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor x;  // (B, 3, H, W) roughly in [-1, 1]
  model_->decoder->set_checkpointing(checkpoint_);  // generators rebuilt() from this one share the decoder
  {
    clipguide::AutocastGuard autocast(z_q.device().type(), autocast_);  // no-op for kFloat
    x = model_->decode(z_q);
  }
  return clamp_with_grad(x.to(at::kFloat).add(1).div(2), 0.0, 1.0);  // (B, 3, H, W) in [0, 1]
}

void VqganGenerator::init_random(uint64_t seed) {
  auto codebook = model_->codebook().detach();  // (N, E)
  auto gen = at::detail::createCPUGenerator(seed);
  // Random codes, looked up: VQGAN+CLIP's one_hot(randint) @ codebook.
  auto indices = at::randint(codebook.size(0), {batch_ * grid_h_ * grid_w_}, gen, at::TensorOptions().dtype(at::kLong));
  auto z = at::embedding(codebook, indices.to(codebook.device()));  // (B*h*w, E)
  latent_.set("z", z.view({batch_, grid_h_, grid_w_, codebook.size(1)}).permute({0, 3, 1, 2}));
}

void VqganGenerator::init_from_image(const at::Tensor& image) {
  at::NoGradGuard no_grad;
  const int64_t f = size_factor();
  const at::Tensor x =  // (B or 1, 3, H, W) in [0, 1]
      init_image_to_size(image, batch_, grid_h_ * f, grid_w_ * f, model_->codebook().device(), "vqgan");
  auto z = model_->encode(x * 2 - 1).z_q;  // (B or 1, E, h, w)
  latent_.set("z", z.expand({batch_, -1, -1, -1}));
}

void VqganGenerator::post_step() {
  at::NoGradGuard no_grad;
  const at::Tensor& z = this->z();
  z.copy_(z.maximum(z_min_).minimum(z_max_));
}

// VQGAN+CLIP's --vqgan_checkpoint / --vqgan_config.
CLIPGUIDE_REGISTER_GENERATOR("vqgan", VqganGenerator, "vqgan_checkpoint", "vqgan_config", /*weights_required=*/true);

}  // namespace clipguide::generators::vqgan
