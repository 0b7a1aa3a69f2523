// taming's VQModel / GumbelVQ autoencoder for inference: encode (encoder -> quant_conv -> quantize) and
// decode (post_quant_conv -> decoder), with strict loading of taming checkpoints (Lightning .ckpt through
// core/io's restricted reader, or safetensors). Module names are taming's state-dict keys.
//
// Shapes: B batch, H x W image, h x w latent grid (H / f, W / f), E embed_dim, N n_embed.
#pragma once

#include "core/io/tensor_map.h"
#include "generators/vqgan/autoencoder.h"
#include "generators/vqgan/config.h"
#include "generators/vqgan/quantize.h"

#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <filesystem>
#include <memory>

namespace clipguide::generators::vqgan {

class VQModelImpl : public torch::nn::Module {
 public:
  explicit VQModelImpl(VqganConfig config);

  // (B, 3, H, W) in [-1, 1] -> (B, E, h, w): encoder then quant_conv (taming's encode_to_prequant).
  at::Tensor encode_prequant(const at::Tensor& x);
  // (B, 3, H, W) in [-1, 1] -> quantised codes (taming's encode, Gumbel without noise).
  Quantized encode(const at::Tensor& x);
  // (B, E, h, w) -> (B, 3, H, W), roughly in [-1, 1].
  at::Tensor decode(const at::Tensor& z_q);
  // (N, E): quantize.embedding.weight (VQModel) or quantize.embed.weight (GumbelVQ).
  at::Tensor codebook() const { return quantize->codebook(); }
  const VqganConfig& config() const { return config_; }

  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
  std::shared_ptr<QuantizerImpl> quantize;

 private:
  VqganConfig config_;
};
TORCH_MODULE(VQModel);

// Reads a taming weight file (.ckpt/.pt torch.save zip, or safetensors; detected by content) into
// state-dict tensors: Lightning's {"state_dict": ...} unwrapped, loss.* (LPIPS, discriminator) dropped,
// and a "first_stage_model." prefix (Net2NetTransformer checkpoints) stripped.
clipguide::TensorMap read_vqgan_weights(const std::filesystem::path& path);

// Copies `state_dict` into `model` strictly: every parameter present with its exact shape, no leftover
// keys. Casts to each parameter's dtype and device. Throws clipguide::Error naming `source` and the keys
// ("missing 'quant_conv.weight' (expected [16, 16, 1, 1])", "'x': got [..], expected [..]", unexpected keys).
void load_vq_weights(VQModelImpl& model, const clipguide::TensorMap& state_dict, const std::string& source,
                     bool adopt = false);  // adopt: see clipguide::load_state_dict

struct VqganLoadOptions {
  std::filesystem::path config;    // taming YAML; empty: infer the architecture from the weights' shapes
  c10::Device device = c10::kCPU;  // where the model lives
};

// Config (YAML or inferred) + weights -> a model in eval mode with requires_grad off on every parameter.
VQModel load_vq_model(const std::filesystem::path& weights, const VqganLoadOptions& options = {});

}  // namespace clipguide::generators::vqgan
