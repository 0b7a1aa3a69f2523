// OpenAI's ModifiedResNet image tower: a three-conv stem with average pooling, anti-aliased Bottleneck stages
// (avgpool before strided convs) and a QKV attention pool instead of global average pooling.
// Names match OpenAI's keys under "visual." (conv1..3, bn1..3, layerN.i.*, downsample.0/.1, attnpool.*).
//
// Shapes: B batch, H x W image, C channels, S = H/32 final grid side, N = S*S + 1 tokens, E embed dim.
#pragma once

#include "clipnet/layers.h"

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include <array>

namespace clipguide::clipnet {

// --- Bottleneck ------------------------------------------------------------------------------------------
struct BottleneckOptions {
  BottleneckOptions(int64_t inplanes, int64_t planes) : inplanes_(inplanes), planes_(planes) {}
  TORCH_ARG(int64_t, inplanes);    // input channels
  TORCH_ARG(int64_t, planes);      // inner channels; output is 4x this
  TORCH_ARG(int64_t, stride) = 1;  // > 1: average-pool by this after conv2 and on the shortcut
};

class BottleneckImpl : public torch::nn::Cloneable<BottleneckImpl> {
 public:
  static constexpr int64_t kExpansion = 4;
  explicit BottleneckImpl(BottleneckOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // (B, Cin, H, W) -> (B, 4*planes, H/stride, W/stride)

  BottleneckOptions options;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  // Shortcut conv "0" and norm "1" (OpenAI's Sequential also holds a parameterless AvgPool2d named "-1",
  // applied in forward here). Null when the shapes already match.
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

// --- AttentionPool2d -------------------------------------------------------------------------------------
struct AttentionPool2dOptions {
  AttentionPool2dOptions(int64_t spacial_dim, int64_t embed_dim, int64_t heads, int64_t output_dim)
      : spacial_dim_(spacial_dim), embed_dim_(embed_dim), heads_(heads), output_dim_(output_dim) {}
  TORCH_ARG(int64_t, spacial_dim);  // S the positions were trained for
  TORCH_ARG(int64_t, embed_dim);    // C of the feature map
  TORCH_ARG(int64_t, heads);        // attention heads
  TORCH_ARG(int64_t, output_dim);   // E
};

class AttentionPool2dImpl : public torch::nn::Cloneable<AttentionPool2dImpl> {
 public:
  explicit AttentionPool2dImpl(AttentionPool2dOptions options);
  void reset() override;
  // (B, C, S, S) -> (B, E): the mean token attends over itself and all positions.
  at::Tensor forward(const at::Tensor& x);

  AttentionPool2dOptions options;
  at::Tensor positional_embedding;  // (N, C)
  torch::nn::Linear k_proj{nullptr}, q_proj{nullptr}, v_proj{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(AttentionPool2d);

// --- ModifiedResNet --------------------------------------------------------------------------------------
struct ModifiedResNetOptions {
  using StageDepths = std::array<int64_t, 4>;
  ModifiedResNetOptions(StageDepths layers, int64_t output_dim, int64_t heads)
      : layers_(layers), output_dim_(output_dim), heads_(heads) {}
  TORCH_ARG(StageDepths, layers);      // Bottleneck blocks per stage
  TORCH_ARG(int64_t, output_dim);             // E
  TORCH_ARG(int64_t, heads);                  // attention-pool heads
  TORCH_ARG(int64_t, image_size) = 224;       // H = W the attention pool's positions were trained for
  TORCH_ARG(int64_t, width) = 64;             // stem width; features are 32x this
};

class ModifiedResNetImpl : public torch::nn::Cloneable<ModifiedResNetImpl> {
 public:
  explicit ModifiedResNetImpl(ModifiedResNetOptions options);
  void reset() override;
  // (B, 3, H, W) normalised pixels -> (B, E). H, W multiples of 32; other sizes than image_size resize the
  // attention pool's positions bicubically.
  at::Tensor forward(const at::Tensor& image);

  ModifiedResNetOptions options;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  AttentionPool2d attnpool{nullptr};
  bool grad_checkpointing = false;  // each stage's activations recomputed in backward (clipnet::checkpoint)
};
TORCH_MODULE(ModifiedResNet);

}  // namespace clipguide::clipnet
