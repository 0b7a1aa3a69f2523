// Building blocks shared by CLIP's towers: LayerNorm computed in fp32, QuickGELU/GELU, multi-head
// self-attention with nn.MultiheadAttention's parameter names, the residual attention block and the
// transformer stack. Registered names reproduce OpenAI's state-dict keys (ln_1, attn.in_proj_weight, ...).
//
// Shapes: B batch, L tokens, C width, H heads, D = C / H channels per head.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>

namespace clipguide::clipnet {

enum class Activation {
  kQuickGelu,  // x * sigmoid(1.702 x): what OpenAI trained with
  kGelu,       // exact (erf) GELU: open_clip's default and Hugging Face's "gelu"
};

at::Tensor apply_activation(const at::Tensor& x, Activation activation);

// ---------------------------------------------------------------------------------------------------------
// LayerNorm over the last dim, computed in fp32 and cast back, so fp16/bf16 models stay stable
// (OpenAI's clip.model.LayerNorm). Parameters: weight (C), bias (C).
struct LayerNormFp32Options {
  LayerNormFp32Options(int64_t width) : width_(width) {}
  TORCH_ARG(int64_t, width);     // C
  TORCH_ARG(double, eps) = 1e-5;  // nn.LayerNorm's default, as in every CLIP
};

class LayerNormFp32Impl : public torch::nn::Cloneable<LayerNormFp32Impl> {
 public:
  explicit LayerNormFp32Impl(LayerNormFp32Options options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // (..., C) -> (..., C), same dtype as x

  LayerNormFp32Options options;
  at::Tensor weight;  // (C)
  at::Tensor bias;    // (C)
};
TORCH_MODULE(LayerNormFp32);

// ---------------------------------------------------------------------------------------------------------
// The rows of a (B, L) token grid that a causal tower's pooled outputs depend on: for each sample the
// positions up to and including its last one (EOT). Rows after it are never attended to, so the per-position
// layers (projections, MLP, norms) skip them; only attention puts the rows back onto the grid.
struct PackedRows {
  int64_t batch = 0;   // B
  int64_t length = 0;  // L
  at::Tensor rows;     // (N) int64 indices into the flattened (B * L) grid, sample by sample, ascending
};

// ---------------------------------------------------------------------------------------------------------
// Multi-head self-attention, parameters named like torch.nn.MultiheadAttention: in_proj_weight (3C, C),
// in_proj_bias (3C), out_proj.{weight,bias}. Computed with at::scaled_dot_product_attention.
struct MultiheadAttentionOptions {
  MultiheadAttentionOptions(int64_t width, int64_t heads) : width_(width), heads_(heads) {}
  TORCH_ARG(int64_t, width);  // C
  TORCH_ARG(int64_t, heads);  // H, divides C
};

class MultiheadAttentionImpl : public torch::nn::Cloneable<MultiheadAttentionImpl> {
 public:
  explicit MultiheadAttentionImpl(MultiheadAttentionOptions options);
  void reset() override;
  // (B, L, C) -> (B, L, C). causal: token i attends to tokens <= i (CLIP's text tower).
  at::Tensor forward(const at::Tensor& x, bool causal = false);
  // Causal attention over packed rows: (N, C) -> (N, C), the same values as forward(causal) at those rows.
  at::Tensor forward_packed(const at::Tensor& x, const PackedRows& packed);
  // The first token's output alone: (B, L, C) -> (B, 1, C), forward(x).narrow(1, 0, 1) with one query.
  at::Tensor forward_first(const at::Tensor& x);

  MultiheadAttentionOptions options;
  at::Tensor in_proj_weight;  // (3C, C): q, k, v stacked
  at::Tensor in_proj_bias;    // (3C)
  torch::nn::Linear out_proj{nullptr};

 private:
  // Multi-head attention before out_proj: q (B, Lq, C), k and v (B, Lk, C) -> (B, Lq, C).
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal);
};
TORCH_MODULE(MultiheadAttention);

// ---------------------------------------------------------------------------------------------------------
// Transformer MLP: c_fc (C -> M), activation, c_proj (M -> C); registered as "mlp" so keys read mlp.c_fc.*.
struct MlpOptions {
  MlpOptions(int64_t width, int64_t hidden) : width_(width), hidden_(hidden) {}
  TORCH_ARG(int64_t, width);                             // C
  TORCH_ARG(int64_t, hidden);                            // M, usually 4C
  TORCH_ARG(Activation, activation) = Activation::kGelu;  // between the two projections
};

class MlpImpl : public torch::nn::Cloneable<MlpImpl> {
 public:
  explicit MlpImpl(MlpOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // (..., C) -> (..., C)

  MlpOptions options;
  torch::nn::Linear c_fc{nullptr};
  torch::nn::Linear c_proj{nullptr};
};
TORCH_MODULE(Mlp);

// ---------------------------------------------------------------------------------------------------------
// Pre-norm residual block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
struct ResidualAttentionBlockOptions {
  ResidualAttentionBlockOptions(int64_t width, int64_t heads) : width_(width), heads_(heads) {}
  TORCH_ARG(int64_t, width);                             // C
  TORCH_ARG(int64_t, heads);                             // H
  TORCH_ARG(double, mlp_ratio) = 4.0;                    // M / C
  TORCH_ARG(Activation, activation) = Activation::kGelu;  // MLP activation
};

class ResidualAttentionBlockImpl : public torch::nn::Cloneable<ResidualAttentionBlockImpl> {
 public:
  explicit ResidualAttentionBlockImpl(ResidualAttentionBlockOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x, bool causal = false);  // (B, L, C) -> (B, L, C)
  at::Tensor forward_packed(const at::Tensor& x, const PackedRows& packed);  // causal, (N, C) -> (N, C)
  at::Tensor forward_first(const at::Tensor& x);  // the first token's output: (B, L, C) -> (B, 1, C)

  ResidualAttentionBlockOptions options;
  LayerNormFp32 ln_1{nullptr};
  MultiheadAttention attn{nullptr};
  LayerNormFp32 ln_2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(ResidualAttentionBlock);

// ---------------------------------------------------------------------------------------------------------
// A stack of residual attention blocks registered as resblocks.0, resblocks.1, ...
struct TransformerOptions {
  TransformerOptions(int64_t width, int64_t layers, int64_t heads) : width_(width), layers_(layers), heads_(heads) {}
  TORCH_ARG(int64_t, width);                             // C
  TORCH_ARG(int64_t, layers);                            // number of blocks
  TORCH_ARG(int64_t, heads);                             // H
  TORCH_ARG(double, mlp_ratio) = 4.0;                    // M / C
  TORCH_ARG(Activation, activation) = Activation::kGelu;  // MLP activation
};

class TransformerImpl : public torch::nn::Cloneable<TransformerImpl> {
 public:
  explicit TransformerImpl(TransformerOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x, bool causal = false);  // (B, L, C) -> (B, L, C)
  at::Tensor forward_packed(const at::Tensor& x, const PackedRows& packed);  // causal, (N, C) -> (N, C)
  // The first token's output (a class token): (B, L, C) -> (B, C), equal to forward(x).select(1, 0); the last
  // block computes only that row (its keys and values still come from every token).
  at::Tensor forward_first_token(const at::Tensor& x);

  TransformerOptions options;
  torch::nn::ModuleList resblocks{nullptr};
  bool grad_checkpointing = false;  // each block's activations recomputed in backward (clipnet::checkpoint)

 private:
  using BlockForward = std::function<at::Tensor(ResidualAttentionBlockImpl&, const at::Tensor&)>;
  // y through every block by block_forward (the last one by last_forward when given), each checkpointed when
  // grad_checkpointing is set.
  at::Tensor each_block(at::Tensor y, const BlockForward& block_forward, const BlockForward& last_forward = {});
};
TORCH_MODULE(Transformer);

// Antialiased bicubic resize of a learned (1 + G*G, C) positional embedding (class/mean token first) to
// (1 + g*g, C), for running a tower at another resolution, as open_clip's resize_pos_embed does when loading.
// Differentiable; returns the input as is when g == G.
at::Tensor resize_positional_embedding(const at::Tensor& positional_embedding, int64_t grid);

}  // namespace clipguide::clipnet
