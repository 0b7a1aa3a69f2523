// OpenAI guided-diffusion's UNetModel in LibTorch: sinusoidal timestep embedding, ResBlocks conditioned on it
// (added, or scale-shift norm), ResBlocks or convolutions doing the up/downsampling, self-attention at chosen
// resolutions with a head count or head width, GroupNorm(32) computed in float. Registered names are
// guided_diffusion's state-dict keys (time_embed.0, input_blocks.1.0.in_layers.0, middle_block.1.qkv,
// output_blocks.3.2.emb_layers.1, out.2, ...), so its .pt files load as they are.
// Inference only: dropout is omitted (Disco's models use 0).
// ref: guided-diffusion-sdk 1.0.0 guided_diffusion/unet.py, nn.py
//
// Shapes: B batch, C channels, H x W image (multiples of UNetConfig::size_factor()), E = 4 * model_channels.
#pragma once

#include "generators/diffusion/config.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace clipguide::generators::diffusion {

// (B) timesteps (fractional allowed) -> (B, dim) [cos | sin] embeddings, frequencies 10000^(-i / (dim / 2)).
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, double max_period = 10000);

// GroupNorm(32, C, eps 1e-5) evaluated in float and cast back (guided_diffusion's GroupNorm32). Parameters
// "weight" and "bias", (C) each.
class Norm32Impl : public torch::nn::Module {
 public:
  explicit Norm32Impl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);  // (B, C, ...) -> same

 private:
  at::Tensor weight_, bias_;
};
TORCH_MODULE(Norm32);

// One layer of a TimestepEmbedSequential: a ResBlock, an AttentionBlock, a conv, a Downsample or an Upsample.
class UNetLayer : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& emb) = 0;
};

// in_layers (norm, SiLU, conv) -> [+ emb or norm * (1 + scale) + shift] -> out_layers (norm, SiLU, conv),
// plus the skip (a 1x1 conv when C changes). up / down: nearest 2x / 2x2 average pooling of both paths
// between in_layers' SiLU and conv.
class ResBlock : public UNetLayer {
 public:
  enum class Resample { kNone, kUp, kDown };
  ResBlock(int64_t channels, int64_t emb_channels, int64_t out_channels, bool scale_shift, Resample resample);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb) override;  // (B, C_in, H, W) -> (B, C_out, H', W')

 private:
  Norm32 in_norm_{nullptr}, out_norm_{nullptr};
  torch::nn::Conv2d in_conv_{nullptr}, out_conv_{nullptr}, skip_{nullptr};  // skip_: C_in != C_out only
  torch::nn::Linear emb_linear_{nullptr};
  bool scale_shift_;
  Resample resample_;
};

// Multi-head self-attention over the H*W positions: norm, 1x1 qkv, attention, 1x1 proj_out, residual.
class AttentionBlock : public UNetLayer {
 public:
  AttentionBlock(int64_t channels, int64_t heads, bool new_order);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb) override;  // (B, C, H, W) -> same

 private:
  Norm32 norm_{nullptr};
  torch::nn::Conv1d qkv_{nullptr}, proj_out_{nullptr};
  int64_t heads_;
  bool new_order_;
};

// A list of layers run in order, each given the embedding (TimestepEmbedSequential); registered "0", "1", ...
class UNetBlockImpl : public torch::nn::Module {
 public:
  void add(std::shared_ptr<UNetLayer> layer);
  at::Tensor forward(at::Tensor x, const at::Tensor& emb);
  std::vector<std::shared_ptr<UNetLayer>> layers;
};
TORCH_MODULE(UNetBlock);

class UNetModelImpl : public torch::nn::Module {
 public:
  explicit UNetModelImpl(UNetConfig config);  // validates the config
  // x (B, in_channels, H, W), timesteps (B) as the model was trained on them (guided_diffusion's
  // _WrappedModel output: mapped and, with rescale_timesteps, scaled to [0, 1000)), labels (B) int64 for a
  // class-conditional model, else undefined. -> (B, out_channels, H, W) in float.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& labels = {});
  // Activation checkpointing: each block recomputed in backward instead of keeping its activations
  // (guided_diffusion's use_checkpoint); same gradient, less memory.
  void set_checkpointing(bool enable) { checkpointing_ = enable; }
  const UNetConfig& config() const { return config_; }

 private:
  at::Tensor run_block(UNetBlock& block, const at::Tensor& h, const at::Tensor& emb);

  UNetConfig config_;
  torch::nn::Linear time_embed_in_{nullptr}, time_embed_out_{nullptr};
  torch::nn::Embedding label_emb_{nullptr};
  std::vector<UNetBlock> input_blocks_, output_blocks_;
  UNetBlock middle_block_{nullptr};
  Norm32 out_norm_{nullptr};
  torch::nn::Conv2d out_conv_{nullptr};
  bool checkpointing_ = false;
};
TORCH_MODULE(UNetModel);

}  // namespace clipguide::generators::diffusion
