// taming-transformers' convolutional Encoder and Decoder (ResnetBlock, AttnBlock, Upsample, Downsample with
// taming's asymmetric padding, GroupNorm(32, eps 1e-6), swish). Registered names are taming's state-dict
// keys: encoder.conv_in, encoder.down.0.block.0.norm1, encoder.down.1.attn.0.q, encoder.mid.block_1, ...
// Inference only: no timestep embedding, dropout omitted (taming's VQGANs use 0).
//
// Shapes: B batch, C channels, H x W image, h x w latent grid (H / f, W / f with f = 2^(levels-1)), Z z_channels.
#pragma once

#include "generators/vqgan/config.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

namespace clipguide::generators::vqgan {

// x * sigmoid(x), through the fused SiLU kernels
at::Tensor swish(const at::Tensor& x);

// GroupNorm(32, channels, eps 1e-6, affine): taming's Normalize.
torch::nn::GroupNorm make_normalize(int64_t channels);

// norm1 -> swish -> conv1 -> norm2 -> swish -> conv2, plus x (through a 1x1 nin_shortcut when C changes).
class ResnetBlockImpl : public torch::nn::Module {
 public:
  ResnetBlockImpl(int64_t in_channels, int64_t out_channels);
  at::Tensor forward(const at::Tensor& x);  // (B, C_in, H, W) -> (B, C_out, H, W)

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};  // nin_shortcut: C_in != C_out only
};
TORCH_MODULE(ResnetBlock);

// Single-head self-attention over all H*W positions with 1x1-conv q, k, v, proj_out; residual.
class AttnBlockImpl : public torch::nn::Module {
 public:
  explicit AttnBlockImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);  // (B, C, H, W) -> (B, C, H, W)

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(AttnBlock);

// Nearest 2x upsampling, then a 3x3 conv (with_conv).
class UpsampleImpl : public torch::nn::Module {
 public:
  UpsampleImpl(int64_t channels, bool with_conv);
  at::Tensor forward(const at::Tensor& x);  // (B, C, H, W) -> (B, C, 2H, 2W)

  torch::nn::Conv2d conv{nullptr};  // null without with_conv
};
TORCH_MODULE(Upsample);

// Pad right and bottom by one, then a 3x3 stride-2 conv (with_conv); else 2x2 average pooling.
class DownsampleImpl : public torch::nn::Module {
 public:
  DownsampleImpl(int64_t channels, bool with_conv);
  at::Tensor forward(const at::Tensor& x);  // (B, C, H, W) -> (B, C, H/2, W/2)

  torch::nn::Conv2d conv{nullptr};  // null without with_conv
};
TORCH_MODULE(Downsample);

// One resolution level: `block` ResnetBlocks, each followed by `attn[i]` when the level has attention, then
// `downsample` (encoder) or `upsample` (decoder) except at the last step.
class LevelImpl : public torch::nn::Module {
 public:
  std::vector<ResnetBlock> blocks;  // registered as block.0, block.1, ...
  std::vector<AttnBlock> attns;     // registered as attn.0, ...; empty or one per block
  Downsample downsample{nullptr};
  Upsample upsample{nullptr};

  // Adds a ResnetBlock (and an AttnBlock when with_attn) under taming's names.
  void add_block(int64_t in_channels, int64_t out_channels, bool with_attn);
  at::Tensor forward_blocks(at::Tensor x);  // the blocks and attentions, without resampling

 private:
  torch::nn::ModuleList block_list_{nullptr}, attn_list_{nullptr};
};
TORCH_MODULE(Level);

// Middle: block_1 -> attn_1 -> block_2 at the lowest resolution.
class MiddleImpl : public torch::nn::Module {
 public:
  explicit MiddleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);

  ResnetBlock block_1{nullptr}, block_2{nullptr};
  AttnBlock attn_1{nullptr};
};
TORCH_MODULE(Middle);

// Image -> latent. (B, in_channels, H, W) -> (B, Z or 2Z, h, w).
class EncoderImpl : public torch::nn::Module {
 public:
  explicit EncoderImpl(const VqganConfig& config);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  std::vector<Level> down;  // registered as down.0, down.1, ...
  Middle mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Encoder);

// Latent -> image. (B, Z, h, w) -> (B, out_ch, H, W), roughly in [-1, 1].
class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const VqganConfig& config);
  at::Tensor forward(const at::Tensor& z);
  // Activation checkpointing (clipguide::checkpoint): the middle, each block (with its attention), each
  // upsampling and the output head are recomputed in backward instead of keeping their activations.
  void set_checkpointing(bool enable) { checkpointing_ = enable; }
  bool checkpointing() const { return checkpointing_; }

  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  Middle mid{nullptr};
  std::vector<Level> up;  // registered as up.0 (full resolution) ... up.(levels-1) (lowest), as in taming
  torch::nn::GroupNorm norm_out{nullptr};

 private:
  bool checkpointing_ = false;
};
TORCH_MODULE(Decoder);

}  // namespace clipguide::generators::vqgan
