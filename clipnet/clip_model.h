// ClipModel: OpenAI's CLIP (image tower + causal text transformer + projections + logit scale) in LibTorch,
// built from a ClipConfig. Parameter names are OpenAI's state-dict keys, so checkpoints load by name
// (clipnet/checkpoint.h). Everything is differentiable w.r.t. the input image, which guidance relies on.
//
// Shapes: B batch, H x W image, L tokens, C text width, E embed dim.
#pragma once

#include "clipnet/config.h"
#include "clipnet/layers.h"
#include "clipnet/modified_resnet.h"
#include "clipnet/vision_transformer.h"

#include <torch/nn/modules/embedding.h>

#include <tuple>

namespace clipguide::clipnet {

class ClipModelImpl : public torch::nn::Cloneable<ClipModelImpl> {
 public:
  explicit ClipModelImpl(ClipConfig config);
  void reset() override;

  // (B, 3, H, W) float, already normalised with config().preprocess -> (B, E) image features (not unit length).
  // Cast to the model's dtype inside, so fp32 pixels work with an fp16 model.
  at::Tensor encode_image(const at::Tensor& image);
  // (B, L) int64 token ids, L <= context_length, EOT being the largest id in each row -> (B, E) text features
  // (not unit length), taken at the EOT position like OpenAI's encode_text.
  at::Tensor encode_text(const at::Tensor& tokens);
  // logits_per_image (B_img, B_txt) = exp(logit_scale) * cosine similarities; logits_per_text is its transpose.
  std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& image, const at::Tensor& tokens);

  const ClipConfig& config() const { return config_; }
  // dtype of the weights (visual.conv1.weight), which encode_* compute in.
  at::ScalarType dtype() const;
  // Gradient checkpointing (open_clip's set_grad_checkpointing): the residual blocks of both transformers
  // and the ResNet stages keep only their inputs and recompute the rest in backward. Same gradients, less
  // memory, about one more forward pass of time.
  void set_grad_checkpointing(bool enable = true);

  // visual: exactly one of these is set, registered as "visual".
  VisionTransformer visual_vit{nullptr};
  ModifiedResNet visual_resnet{nullptr};
  torch::nn::Embedding token_embedding{nullptr};  // (vocab, C)
  at::Tensor positional_embedding;                // (context_length, C)
  Transformer transformer{nullptr};
  LayerNormFp32 ln_final{nullptr};
  at::Tensor text_projection;  // (C, E)
  at::Tensor logit_scale;      // () log of the inverse softmax temperature

 private:
  ClipConfig config_;
};
TORCH_MODULE(ClipModel);

}  // namespace clipguide::clipnet
