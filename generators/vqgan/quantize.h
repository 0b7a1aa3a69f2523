// taming's quantisers: VectorQuantizer (nearest codebook entry, straight-through; taming's VectorQuantizer2
// in legacy mode, the one VQModel uses) and GumbelQuantize (GumbelVQ; here always the noise-free argmax
// code), plus VQGAN+CLIP's vector_quantize, the straight-through quantiser guidance optimises through.
//
// Shapes: B batch, E embed_dim, N n_embed (codebook entries), h x w latent grid, M = B*h*w vectors.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace clipguide::generators::vqgan {

struct Quantized {
  at::Tensor z_q;      // (B, E, h, w) codebook vectors (straight-through for VectorQuantizer)
  at::Tensor indices;  // (B, h, w) int64 codebook indices
  at::Tensor loss;     // () VectorQuantizer: commitment + beta * codebook loss (taming's legacy weighting); Gumbel: undefined
};

// Index of the nearest codebook row for each row of x, by taming's expansion
// |x|^2 + |e|^2 - 2 x.e (ties go to the lowest index, as argmin does). (M, E), (N, E) -> (M) int64.
at::Tensor nearest_code_indices(const at::Tensor& x, const at::Tensor& codebook);

// VQGAN+CLIP's vector_quantize on a channels-first latent: forward, the nearest codebook vectors; backward,
// the gradient goes to z unchanged (replace_grad). (B, E, h, w), (N, E) -> (B, E, h, w).
at::Tensor vector_quantize(const at::Tensor& z, const at::Tensor& codebook);

// What VQModel needs from a quantiser. Registered under "quantize".
class QuantizerImpl : public torch::nn::Module {
 public:
  // (B, E, h, w) quant_conv output -> codes.
  virtual Quantized forward(const at::Tensor& h) = 0;
  // (N, E) the vectors a decoder input is made of.
  virtual at::Tensor codebook() const = 0;
};

// taming.modules.vqvae.quantize.VectorQuantizer2 (legacy): parameter embedding.weight (N, E).
class VectorQuantizerImpl : public QuantizerImpl {
 public:
  // beta: commitment cost; taming's VQModel hard-codes 0.25.
  VectorQuantizerImpl(int64_t n_embed, int64_t embed_dim, double beta = 0.25);
  // z_q = z + (codebook[indices] - z).detach(), exactly taming's straight-through form.
  Quantized forward(const at::Tensor& z) override;
  at::Tensor codebook() const override { return embedding->weight; }

  torch::nn::Embedding embedding{nullptr};
  double beta;
};
TORCH_MODULE(VectorQuantizer);

// taming.modules.vqvae.quantize.GumbelQuantize: proj (1x1 conv, num_hiddens -> N logits), embed.weight (N, E).
// taming adds Gumbel noise even in eval mode; this takes the argmax of the logits (the mode), which makes
// encoding deterministic. Not differentiable (inference only).
class GumbelQuantizeImpl : public QuantizerImpl {
 public:
  GumbelQuantizeImpl(int64_t num_hiddens, int64_t embed_dim, int64_t n_embed);
  Quantized forward(const at::Tensor& z) override;
  at::Tensor codebook() const override { return embed->weight; }

  torch::nn::Conv2d proj{nullptr};
  torch::nn::Embedding embed{nullptr};
};
TORCH_MODULE(GumbelQuantize);

}  // namespace clipguide::generators::vqgan
