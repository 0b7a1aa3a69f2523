// OpenAI's VisionTransformer image tower: patchify conv, class token, learned positions, pre-norm transformer,
// class-token output projected to the joint embedding. Names match OpenAI's keys under "visual.".
//
// Shapes: B batch, H x W image, P patch side, G = H / P grid side, N = G*G + 1 tokens, C width, E embed dim.
#pragma once

#include "clipnet/layers.h"

#include <torch/nn/modules/conv.h>

namespace clipguide::clipnet {

struct VisionTransformerOptions {
  VisionTransformerOptions(int64_t image_size, int64_t patch_size, int64_t width, int64_t layers, int64_t heads,
                           int64_t output_dim)
      : image_size_(image_size), patch_size_(patch_size), width_(width), layers_(layers), heads_(heads),
        output_dim_(output_dim) {}
  TORCH_ARG(int64_t, image_size);                        // H = W the positions were trained for
  TORCH_ARG(int64_t, patch_size);                        // P
  TORCH_ARG(int64_t, width);                             // C
  TORCH_ARG(int64_t, layers);                            // transformer blocks
  TORCH_ARG(int64_t, heads);                             // attention heads
  TORCH_ARG(int64_t, output_dim);                        // E
  TORCH_ARG(double, mlp_ratio) = 4.0;                    // MLP hidden / C
  TORCH_ARG(Activation, activation) = Activation::kGelu;  // MLP activation
};

class VisionTransformerImpl : public torch::nn::Cloneable<VisionTransformerImpl> {
 public:
  explicit VisionTransformerImpl(VisionTransformerOptions options);
  void reset() override;
  // (B, 3, H, W) normalised pixels -> (B, E). Another square size than image_size (a multiple of P) works
  // by resizing the positional embedding bicubically.
  at::Tensor forward(const at::Tensor& image);

  VisionTransformerOptions options;
  torch::nn::Conv2d conv1{nullptr};  // (C, 3, P, P), no bias
  at::Tensor class_embedding;        // (C)
  at::Tensor positional_embedding;   // (N, C)
  LayerNormFp32 ln_pre{nullptr};
  Transformer transformer{nullptr};
  LayerNormFp32 ln_post{nullptr};
  at::Tensor proj;  // (C, E)
};
TORCH_MODULE(VisionTransformer);

}  // namespace clipguide::clipnet
