// ClipModel (see clip_model.h).
// ref: openai/CLIP clip/model.py (openai-clip 1.0.1) CLIP
//
// Shapes: B batch, H x W image, L tokens, C text width, E embed dim.
#include "clipnet/clip_model.h"

#include "core/error.h"
#include "core/skip_init.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <torch/nn/init.h>

#include <cmath>

namespace clipguide::clipnet {

ClipModelImpl::ClipModelImpl(ClipConfig config) : config_(std::move(config)) { reset(); }

void ClipModelImpl::reset() {
  config_.validate();
  const auto act = config_.quick_gelu ? Activation::kQuickGelu : Activation::kGelu;
  const auto& v = config_.vision;
  const auto& t = config_.text;
  // Registration order follows OpenAI's CLIP so named_parameters() lists keys like its state dict.
  if (v.is_resnet()) {
    visual_resnet = register_module(
        "visual", ModifiedResNet(ModifiedResNetOptions({v.layers[0], v.layers[1], v.layers[2], v.layers[3]},
                                                       config_.embed_dim, v.heads())
                                     .image_size(v.image_size)
                                     .width(v.width)));
  } else {
    visual_vit = register_module("visual", VisionTransformer(VisionTransformerOptions(v.image_size, v.patch_size, v.width,
                                                                                      v.layers[0], v.heads(),
                                                                                      config_.embed_dim)
                                                                 .mlp_ratio(v.mlp_ratio)
                                                                 .activation(act)));
  }
  transformer = register_module(
      "transformer", Transformer(TransformerOptions(t.width, t.layers, t.heads).mlp_ratio(t.mlp_ratio).activation(act)));
  token_embedding = register_module("token_embedding", clipguide::embedding(t.vocab_size, t.width));
  positional_embedding = register_parameter("positional_embedding", at::empty({t.context_length, t.width}));
  ln_final = register_module("ln_final", LayerNormFp32(t.width));
  text_projection = register_parameter("text_projection", at::empty({t.width, config_.embed_dim}));
  logit_scale = register_parameter("logit_scale", at::ones({}) * std::log(1 / 0.07));

  // OpenAI's initialize_parameters for the text side, so an untrained model is well scaled.
  if (init_skipped()) return;  // about to be loaded
  at::NoGradGuard no_grad;
  torch::nn::init::normal_(token_embedding->weight, 0.0, 0.02);
  torch::nn::init::normal_(positional_embedding, 0.0, 0.01);
  torch::nn::init::normal_(text_projection, 0.0, std::pow(static_cast<double>(t.width), -0.5));
}

void ClipModelImpl::set_grad_checkpointing(bool enable) {
  if (visual_vit) visual_vit->transformer->grad_checkpointing = enable;
  if (visual_resnet) visual_resnet->grad_checkpointing = enable;
  transformer->grad_checkpointing = enable;
}

at::ScalarType ClipModelImpl::dtype() const {
  return visual_vit ? visual_vit->conv1->weight.scalar_type() : visual_resnet->conv1->weight.scalar_type();
}

at::Tensor ClipModelImpl::encode_image(const at::Tensor& image) {
  auto x = image.to(dtype());  // (B, 3, H, W)
  return visual_vit ? visual_vit->forward(x) : visual_resnet->forward(x);  // (B, E)
}

at::Tensor ClipModelImpl::encode_text(const at::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "encode_text expects (B, L) token ids, got ", tokens.sizes());
  TORCH_CHECK(tokens.size(1) <= config_.text.context_length, "encode_text: ", tokens.size(1),
              " tokens exceed the context length ", config_.text.context_length);
  const auto dt = dtype();
  const int64_t b = tokens.size(0);
  if (b == 0) return at::empty({0, text_projection.size(1)}, text_projection.options().dtype(dt));
  auto ids = tokens.to(at::kLong);
  // The EOT token has the largest id, so argmax finds it (OpenAI's pooling).
  auto eot = ids.argmax(-1);  // (B)
  // Attention is causal and everything else is per position, so a sample's pooled EOT output does not depend
  // on anything after its EOT: the grid is cut after the batch's last EOT, and only each sample's positions
  // up to its EOT go through the tower, packed (exactly the same result, less work: captions are usually far
  // shorter than the context and than each other).
  const int64_t l = eot.max().item<int64_t>() + 1;
  auto positions = at::arange(l, ids.options());                                                 // (L)
  PackedRows packed{b, l, (positions.unsqueeze(0) <= eot.unsqueeze(1)).flatten().nonzero().squeeze(1)};  // (N)
  auto x = token_embedding(ids.narrow(1, 0, l).flatten().index_select(0, packed.rows)).to(dt);  // (N, C)
  x = x + positional_embedding.index_select(0, packed.rows.remainder(l)).to(dt);                // (N, C)
  x = transformer->forward_packed(x, packed);                                                    // (N, C)
  auto eot_rows = (eot + 1).cumsum(0) - 1;                                 // (B) each sample's last packed row
  auto pooled = ln_final(x.index_select(0, eot_rows));                     // (B, C)
  return at::matmul(pooled, text_projection.to(dt));                       // (B, E)
}

std::tuple<at::Tensor, at::Tensor> ClipModelImpl::forward(const at::Tensor& image, const at::Tensor& tokens) {
  auto image_features = encode_image(image);  // (Bi, E)
  auto text_features = encode_text(tokens);   // (Bt, E)
  image_features = image_features / image_features.norm(2, {1}, /*keepdim=*/true);
  text_features = text_features / text_features.norm(2, {1}, /*keepdim=*/true);
  auto logits_per_image = logit_scale.exp() * at::matmul(image_features, text_features.t());  // (Bi, Bt)
  return {logits_per_image, logits_per_image.t()};
}

}  // namespace clipguide::clipnet
