// taming's quantisers and VQGAN+CLIP's vector_quantize (see quantize.h).
// ref: taming-transformers-rom1504 0.0.6 taming/modules/vqvae/quantize.py (VectorQuantizer2, GumbelQuantize)
// ref: nerdyrodent/VQGAN-CLIP generate.py (vector_quantize)
// Shapes: B batch, E embed_dim, N n_embed, h x w latent grid, M = B*h*w.
#include "generators/vqgan/quantize.h"

#include "core/error.h"
#include "core/grad_ops.h"
#include "core/skip_init.h"

#include <ATen/ops/argmax.h>
#include <ATen/ops/argmin.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/sum.h>

namespace clipguide::generators::vqgan {

at::Tensor nearest_code_indices(const at::Tensor& x, const at::Tensor& codebook) {
  TORCH_CHECK(x.dim() == 2 && codebook.dim() == 2 && x.size(1) == codebook.size(1),
              "nearest_code_indices: expected (M, E) and (N, E), got ", x.sizes(), " and ", codebook.sizes());
  // (M, N) squared distances, expanded as taming and VQGAN+CLIP do (same rounding, same argmin).
  auto d = x.pow(2).sum(1, /*keepdim=*/true) + codebook.pow(2).sum(1) - 2 * at::matmul(x, codebook.t());
  return d.argmin(1);  // (M)
}

at::Tensor vector_quantize(const at::Tensor& z, const at::Tensor& codebook) {
  TORCH_CHECK(z.dim() == 4 && codebook.dim() == 2 && z.size(1) == codebook.size(1),
              "vector_quantize: expected z (B, E, h, w) and codebook (N, E), got ", z.sizes(), " and ",
              codebook.sizes());
  auto x = z.movedim(1, 3);                                            // (B, h, w, E)
  auto indices = nearest_code_indices(x.reshape({-1, x.size(3)}).detach(), codebook.detach());  // (M)
  // VQGAN+CLIP takes one_hot(indices) @ codebook: the same rows, exactly.
  auto x_q = at::embedding(codebook, indices).view(x.sizes());        // (B, h, w, E)
  return replace_grad(x_q, x).movedim(3, 1);                            // (B, E, h, w)
}

// ---------------------------------------------------------------------------------------------------------
VectorQuantizerImpl::VectorQuantizerImpl(int64_t n_embed, int64_t embed_dim, double beta) : beta(beta) {
  embedding = register_module("embedding", clipguide::embedding(n_embed, embed_dim));
}

Quantized VectorQuantizerImpl::forward(const at::Tensor& z_in) {
  const auto& weight = embedding->weight;  // (N, E)
  TORCH_CHECK(z_in.dim() == 4 && z_in.size(1) == weight.size(1), "VectorQuantizer: expected (B, ", weight.size(1),
              ", h, w), got ", z_in.sizes());
  auto z = z_in.permute({0, 2, 3, 1}).contiguous();  // (B, h, w, E)
  auto indices = nearest_code_indices(z.view({-1, weight.size(1)}), weight);  // (M)
  auto z_q = at::embedding(weight, indices).view(z.sizes());                  // (B, h, w, E)
  // taming's legacy form: beta weighs the codebook term, not the commitment term (kept for compatibility).
  auto loss = (z_q.detach() - z).pow(2).mean() + beta * (z_q - z.detach()).pow(2).mean();  // ()
  z_q = z + (z_q - z).detach();  // straight-through, taming's form (equals z_q up to rounding)
  return {z_q.permute({0, 3, 1, 2}).contiguous(), indices.view({z.size(0), z.size(1), z.size(2)}), loss};
}

// ---------------------------------------------------------------------------------------------------------
GumbelQuantizeImpl::GumbelQuantizeImpl(int64_t num_hiddens, int64_t embed_dim, int64_t n_embed) {
  proj = register_module("proj", clipguide::conv2d(torch::nn::Conv2dOptions(num_hiddens, n_embed, 1)));
  embed = register_module("embed", clipguide::embedding(n_embed, embed_dim));
}

Quantized GumbelQuantizeImpl::forward(const at::Tensor& z) {
  auto logits = proj(z);                              // (B, N, h, w)
  auto indices = logits.argmax(1);                    // (B, h, w)
  auto z_q = at::embedding(embed->weight, indices);   // (B, h, w, E)
  return {z_q.permute({0, 3, 1, 2}).contiguous(), indices, at::Tensor()};
}

}  // namespace clipguide::generators::vqgan
