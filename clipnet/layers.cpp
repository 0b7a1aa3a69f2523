// LayerNormFp32, activations, MultiheadAttention, Mlp, ResidualAttentionBlock, Transformer (see layers.h).
// ref: openai/CLIP clip/model.py (openai-clip 1.0.1) LayerNorm, QuickGELU, ResidualAttentionBlock, Transformer
//
// Shapes: B batch, L tokens, C width, H heads, D = C / H.
#include "clipnet/layers.h"

#include "core/grad_ops.h"
#include "core/skip_init.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/index_copy.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <torch/nn/init.h>

#include <cmath>
#include <vector>

namespace clipguide::clipnet {

at::Tensor apply_activation(const at::Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::kQuickGelu:
      // x * sigmoid(1.702 x) as silu(1.702 x) / 1.702: three passes backward instead of five.
      return at::silu(1.702 * x) / 1.702;
    case Activation::kGelu:
      return at::gelu(x);
  }
  TORCH_INTERNAL_ASSERT(false, "unknown activation");
}

// --- LayerNormFp32 ---------------------------------------------------------------------------------------
LayerNormFp32Impl::LayerNormFp32Impl(LayerNormFp32Options options_) : options(std::move(options_)) { reset(); }

void LayerNormFp32Impl::reset() {
  weight = register_parameter("weight", at::ones({options.width()}));
  bias = register_parameter("bias", at::zeros({options.width()}));
}

at::Tensor LayerNormFp32Impl::forward(const at::Tensor& x) {
  // fp16 statistics over wide rows lose precision; OpenAI's LayerNorm casts up and back.
  auto y = at::layer_norm(x.to(at::kFloat), {options.width()}, weight.to(at::kFloat), bias.to(at::kFloat),
                          options.eps());
  return y.to(x.scalar_type());
}

// --- MultiheadAttention ----------------------------------------------------------------------------------
MultiheadAttentionImpl::MultiheadAttentionImpl(MultiheadAttentionOptions options_) : options(std::move(options_)) {
  reset();
}

void MultiheadAttentionImpl::reset() {
  const int64_t c = options.width();
  TORCH_CHECK(c % options.heads() == 0, "attention width ", c, " is not divisible by heads ", options.heads());
  in_proj_weight = register_parameter("in_proj_weight", at::empty({3 * c, c}));
  in_proj_bias = register_parameter("in_proj_bias", at::zeros({3 * c}));
  out_proj = register_module("out_proj", clipguide::linear(c, c));
  if (init_skipped()) return;  // about to be loaded
  at::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(in_proj_weight);  // nn.MultiheadAttention's init
  out_proj->bias.zero_();
}

at::Tensor MultiheadAttentionImpl::forward(const at::Tensor& x, bool causal) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.width(), "attention input must be (B, L, ", options.width(),
              "), got ", x.sizes());
  auto qkv = at::linear(x, in_proj_weight, in_proj_bias).chunk(3, -1);  // 3 x (B, L, C)
  return out_proj(attend(qkv[0], qkv[1], qkv[2], causal));              // (B, L, C)
}

at::Tensor MultiheadAttentionImpl::forward_packed(const at::Tensor& x, const PackedRows& packed) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == options.width() && x.size(0) == packed.rows.size(0),
              "packed attention input must be (", packed.rows.size(0), ", ", options.width(), "), got ", x.sizes());
  const int64_t b = packed.batch, l = packed.length, c = options.width();
  auto qkv = at::linear(x, in_proj_weight, in_proj_bias);  // (N, 3C)
  // Onto the grid for attention: the zero rows after each sample's last position are never attended to by
  // its packed rows (causal), whatever they hold.
  auto grid = at::index_copy(at::zeros({b * l, 3 * c}, qkv.options()), 0, packed.rows, qkv).view({b, l, 3 * c});
  auto parts = grid.chunk(3, -1);                                                          // 3 x (B, L, C)
  auto out = attend(parts[0], parts[1], parts[2], /*causal=*/true).reshape({b * l, c});  // (B * L, C)
  return out_proj(out.index_select(0, packed.rows));                                     // (N, C)
}

at::Tensor MultiheadAttentionImpl::forward_first(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.width(), "attention input must be (B, L, ", options.width(),
              "), got ", x.sizes());
  const int64_t c = options.width();
  auto q = at::linear(x.narrow(1, 0, 1), in_proj_weight.narrow(0, 0, c), in_proj_bias.narrow(0, 0, c));  // (B, 1, C)
  auto kv = at::linear(x, in_proj_weight.narrow(0, c, 2 * c), in_proj_bias.narrow(0, c, 2 * c)).chunk(2, -1);
  return out_proj(attend(q, kv[0], kv[1], /*causal=*/false));  // (B, 1, C)
}

at::Tensor MultiheadAttentionImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal) {
  const int64_t b = q.size(0), c = options.width(), h = options.heads(), d = c / h;
  auto split_heads = [&](const at::Tensor& t) { return t.view({b, t.size(1), h, d}).transpose(1, 2); };  // (B, H, L, D)
  auto out = at::scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v), /*attn_mask=*/{},
                                              /*dropout_p=*/0.0, /*is_causal=*/causal);  // (B, H, Lq, D)
  return out.transpose(1, 2).reshape({b, q.size(1), c});                                   // (B, Lq, C)
}

// --- Mlp -------------------------------------------------------------------------------------------------
MlpImpl::MlpImpl(MlpOptions options_) : options(std::move(options_)) { reset(); }

void MlpImpl::reset() {
  c_fc = register_module("c_fc", clipguide::linear(options.width(), options.hidden()));
  c_proj = register_module("c_proj", clipguide::linear(options.hidden(), options.width()));
}

namespace {

// scale_out · (x Wᵀ) + scale_bias · b over x's last dimension, the scales applied inside the GEMM (addmm's
// alpha and beta) rather than as passes of their own.
at::Tensor scaled_linear(const at::Tensor& x, const torch::nn::Linear& linear, double scale_out, double scale_bias) {
  const int64_t in = x.size(-1);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = linear->weight.size(0);
  return at::addmm(linear->bias, x.reshape({-1, in}), linear->weight.t(), scale_bias, scale_out).view(shape);
}

}  // namespace

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  if (options.activation() == Activation::kQuickGelu && c_fc->bias.defined() && c_proj->bias.defined()) {
    // c_proj(x·sigmoid(1.702 x)) with x = c_fc(·), as silu(1.702 x) / 1.702 with both scales folded into the
    // projections: one pass forward (silu) and two backward instead of three and three.
    constexpr double k = 1.702;
    return scaled_linear(at::silu(scaled_linear(x, c_fc, k, k)), c_proj, 1 / k, 1);
  }
  return c_proj(apply_activation(c_fc(x), options.activation()));
}

// --- ResidualAttentionBlock ------------------------------------------------------------------------------
ResidualAttentionBlockImpl::ResidualAttentionBlockImpl(ResidualAttentionBlockOptions options_)
    : options(std::move(options_)) {
  reset();
}

void ResidualAttentionBlockImpl::reset() {
  const int64_t c = options.width();
  // Registration order follows OpenAI's (attn, ln_1, mlp, ln_2) so named_parameters() lists keys like its state dict.
  attn = register_module("attn", MultiheadAttention(MultiheadAttentionOptions(c, options.heads())));
  ln_1 = register_module("ln_1", LayerNormFp32(c));
  auto hidden = static_cast<int64_t>(std::llround(c * options.mlp_ratio()));
  mlp = register_module("mlp", Mlp(MlpOptions(c, hidden).activation(options.activation())));
  ln_2 = register_module("ln_2", LayerNormFp32(c));
}

at::Tensor ResidualAttentionBlockImpl::forward(const at::Tensor& x, bool causal) {
  auto y = x + attn(ln_1(x), causal);  // (B, L, C)
  return y + mlp(ln_2(y));
}

at::Tensor ResidualAttentionBlockImpl::forward_packed(const at::Tensor& x, const PackedRows& packed) {
  auto y = x + attn->forward_packed(ln_1(x), packed);  // (N, C)
  return y + mlp(ln_2(y));
}

at::Tensor ResidualAttentionBlockImpl::forward_first(const at::Tensor& x) {
  auto y = x.narrow(1, 0, 1) + attn->forward_first(ln_1(x));  // (B, 1, C)
  return y + mlp(ln_2(y));
}

// --- Transformer -----------------------------------------------------------------------------------------
TransformerImpl::TransformerImpl(TransformerOptions options_) : options(std::move(options_)) { reset(); }

void TransformerImpl::reset() {
  resblocks = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.layers(); ++i) {
    resblocks->push_back(ResidualAttentionBlock(ResidualAttentionBlockOptions(options.width(), options.heads())
                                                    .mlp_ratio(options.mlp_ratio())
                                                    .activation(options.activation())));
  }
}

at::Tensor TransformerImpl::forward(const at::Tensor& x, bool causal) {
  return each_block(x, [causal](ResidualAttentionBlockImpl& block, const at::Tensor& t) {
    return block.forward(t, causal);
  });
}

at::Tensor TransformerImpl::forward_packed(const at::Tensor& x, const PackedRows& packed) {
  // packed by value: a checkpointed block runs this again in backward, after the caller's copy is gone.
  return each_block(x, [packed](ResidualAttentionBlockImpl& block, const at::Tensor& t) {
    return block.forward_packed(t, packed);
  });
}

at::Tensor TransformerImpl::forward_first_token(const at::Tensor& x) {
  if (resblocks->size() == 0) return x.select(1, 0);
  auto first = [](ResidualAttentionBlockImpl& block, const at::Tensor& t) { return block.forward_first(t); };
  auto every = [](ResidualAttentionBlockImpl& block, const at::Tensor& t) { return block.forward(t, false); };
  return each_block(x, every, first).select(1, 0);  // (B, C)
}

at::Tensor TransformerImpl::each_block(at::Tensor y, const BlockForward& block_forward,
                                       const BlockForward& last_forward) {
  const size_t n = resblocks->size();
  for (size_t i = 0; i < n; ++i) {
    auto block = std::static_pointer_cast<ResidualAttentionBlockImpl>(resblocks[i]);
    const BlockForward& f = i + 1 == n && last_forward ? last_forward : block_forward;
    if (grad_checkpointing) {
      // The recomputation in backward calls f again: what it captures lives until then.
      y = checkpoint([block, f](const at::Tensor& t) { return f(*block, t); }, y, block->parameters());
    } else {
      y = f(*block, y);
    }
  }
  return y;
}

// --- positional embedding resize -------------------------------------------------------------------------
at::Tensor resize_positional_embedding(const at::Tensor& positional_embedding, int64_t grid) {
  const int64_t tokens = positional_embedding.size(0), c = positional_embedding.size(1);
  const auto old_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tokens - 1))));
  TORCH_CHECK(old_grid * old_grid + 1 == tokens, "positional embedding of ", tokens, " tokens is not 1 + a square grid");
  if (old_grid == grid) return positional_embedding;
  auto first = positional_embedding.narrow(0, 0, 1);  // (1, C)
  auto spatial = positional_embedding.narrow(0, 1, tokens - 1)
                     .reshape({1, old_grid, old_grid, c})
                     .permute({0, 3, 1, 2})
                     .to(at::kFloat);  // (1, C, G, G)
  // ref: open_clip_torch 3.3 open_clip/model.py resize_pos_embed: F.interpolate(bicubic, antialias=True,
  // align_corners=False). The antialiased kernel (PIL's a = -0.5) differs from plain bicubic even when upsampling.
  const int64_t size[2] = {grid, grid};
  auto resized = at::_upsample_bicubic2d_aa(spatial, at::IntArrayRef(size), /*align_corners=*/false,
                                            /*scale_factors=*/std::nullopt);  // (1, C, g, g)
  resized = resized.permute({0, 2, 3, 1}).reshape({grid * grid, c}).to(positional_embedding.scalar_type());
  return at::cat({first, resized}, 0);  // (1 + g*g, C)
}

}  // namespace clipguide::clipnet
