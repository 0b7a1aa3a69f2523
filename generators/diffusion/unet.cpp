// guided-diffusion's UNetModel in LibTorch (see unet.h).
// ref: guided-diffusion-sdk 1.0.0 guided_diffusion/unet.py (ResBlock, AttentionBlock, QKVAttention[Legacy],
// UNetModel), nn.py (GroupNorm32, timestep_embedding)
// Shapes: B batch, C channels, H x W spatial, T = H * W positions, E = 4 * model_channels.
#include "generators/diffusion/unet.h"

#include "core/error.h"
#include "core/grad_ops.h"
#include "core/skip_init.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/group_norm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/upsample_nearest2d.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

namespace clipguide::generators::diffusion {

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return clipguide::conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2));
}

// A module whose children are numbered as in an nn.Sequential ("0", "2", ...), for state-dict names.
std::shared_ptr<torch::nn::Module> sequential_names(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

at::Tensor upsample2x(const at::Tensor& x) {
  return at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)}, 2.0, 2.0);  // (B, C, 2H, 2W)
}
at::Tensor downsample2x(const at::Tensor& x) { return at::avg_pool2d(x, {2, 2}, {2, 2}); }

// input_blocks.0.0: a 3x3 conv whose weight and bias sit directly under the layer's name.
class ConvLayer : public UNetLayer {
 public:
  ConvLayer(int64_t in, int64_t out) {
    auto c = conv(in, out, 3);
    weight_ = register_parameter("weight", c->weight);
    bias_ = register_parameter("bias", c->bias);
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor&) override { return at::conv2d(x, weight_, bias_, 1, 1); }

 private:
  at::Tensor weight_, bias_;
};

// Downsample: a stride-2 3x3 conv ("op") or 2x2 average pooling.
class DownsampleLayer : public UNetLayer {
 public:
  DownsampleLayer(int64_t channels, bool with_conv) {
    if (with_conv) op_ = register_module("op", conv(channels, channels, 3, 2));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor&) override { return op_ ? op_(x) : downsample2x(x); }

 private:
  torch::nn::Conv2d op_{nullptr};
};

// Upsample: nearest 2x, then a 3x3 conv ("conv") when with_conv.
class UpsampleLayer : public UNetLayer {
 public:
  UpsampleLayer(int64_t channels, bool with_conv) {
    if (with_conv) conv_ = register_module("conv", conv(channels, channels, 3));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor&) override {
    auto h = upsample2x(x);
    return conv_ ? conv_(h) : h;
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, double max_period) {
  const int64_t half = dim / 2;
  const auto freqs =
      at::exp(-std::log(max_period) * at::arange(0, half, at::TensorOptions().dtype(at::kFloat)) / half)
          .to(timesteps.device());
  const auto args = timesteps.unsqueeze(1).to(at::kFloat) * freqs.unsqueeze(0);  // (B, half)
  auto embedding = at::cat({at::cos(args), at::sin(args)}, -1);
  if (dim % 2) embedding = at::cat({embedding, at::zeros_like(embedding.narrow(1, 0, 1))}, -1);
  return embedding;  // (B, dim)
}

Norm32Impl::Norm32Impl(int64_t channels) {
  weight_ = register_parameter("weight", at::ones({channels}));
  bias_ = register_parameter("bias", at::zeros({channels}));
}

at::Tensor Norm32Impl::forward(const at::Tensor& x) {
  return at::group_norm(x.to(at::kFloat), 32, weight_, bias_, 1e-5).to(x.scalar_type());
}

// ---------------------------------------------------------------------------------------------------------
ResBlock::ResBlock(int64_t channels, int64_t emb_channels, int64_t out_channels, bool scale_shift, Resample resample)
    : scale_shift_(scale_shift), resample_(resample) {
  auto in_layers = sequential_names(*this, "in_layers");
  in_norm_ = in_layers->register_module("0", Norm32(channels));
  in_conv_ = in_layers->register_module("2", conv(channels, out_channels, 3));
  auto emb_layers = sequential_names(*this, "emb_layers");
  emb_linear_ = emb_layers->register_module("1", clipguide::linear(emb_channels, (scale_shift ? 2 : 1) * out_channels));
  auto out_layers = sequential_names(*this, "out_layers");
  out_norm_ = out_layers->register_module("0", Norm32(out_channels));
  out_conv_ = out_layers->register_module("3", conv(out_channels, out_channels, 3));
  if (out_channels != channels) skip_ = register_module("skip_connection", conv(channels, out_channels, 1));
}

at::Tensor ResBlock::forward(const at::Tensor& x_in, const at::Tensor& emb) {
  auto h = at::silu(in_norm_(x_in));
  auto x = x_in;
  if (resample_ != Resample::kNone) {  // both paths resampled between the SiLU and the conv
    const auto resample = resample_ == Resample::kUp ? upsample2x : downsample2x;
    h = resample(h);
    x = resample(x);
  }
  h = in_conv_(h);                                                               // (B, C_out, H', W')
  const auto emb_out = emb_linear_(at::silu(emb)).to(h.scalar_type()).unsqueeze(-1).unsqueeze(-1);  // (B, C_out or 2 C_out, 1, 1)
  if (scale_shift_) {
    const auto parts = emb_out.chunk(2, 1);
    h = out_norm_(h) * (1 + parts[0]) + parts[1];
  } else {
    h = out_norm_(h + emb_out);
  }
  h = out_conv_(at::silu(h));
  return (skip_ ? skip_(x) : x) + h;
}

// ---------------------------------------------------------------------------------------------------------
AttentionBlock::AttentionBlock(int64_t channels, int64_t heads, bool new_order) : heads_(heads), new_order_(new_order) {
  norm_ = register_module("norm", Norm32(channels));
  qkv_ = register_module("qkv", clipguide::conv1d(torch::nn::Conv1dOptions(channels, 3 * channels, 1)));
  proj_out_ = register_module("proj_out", clipguide::conv1d(torch::nn::Conv1dOptions(channels, channels, 1)));
}

at::Tensor AttentionBlock::forward(const at::Tensor& x_in, const at::Tensor&) {
  const int64_t b = x_in.size(0), c = x_in.size(1), ch = c / heads_;
  const auto x = x_in.flatten(2);   // (B, C, T)
  const auto qkv = qkv_(norm_(x));  // (B, 3C, T)
  const int64_t t = x.size(2);
  // QKVAttentionLegacy: channels grouped per head as [q | k | v]; QKVAttention: [all q | all k | all v].
  std::vector<at::Tensor> parts = new_order_ ? qkv.reshape({b, 3, heads_, ch, t}).unbind(1)
                                             : qkv.reshape({b, heads_, 3 * ch, t}).split(ch, 2);
  // softmax(q^T k / sqrt(ch)) v per head, as guided_diffusion computes it (it scales q and k by ch^-1/4 each).
  const auto a = at::scaled_dot_product_attention(parts[0].transpose(2, 3), parts[1].transpose(2, 3),
                                                  parts[2].transpose(2, 3));  // (B, heads, T, ch)
  const auto h = proj_out_(a.transpose(2, 3).reshape({b, c, t}));
  return (x + h).reshape(x_in.sizes());
}

// ---------------------------------------------------------------------------------------------------------
void UNetBlockImpl::add(std::shared_ptr<UNetLayer> layer) {
  register_module(std::to_string(layers.size()), layer);
  layers.push_back(std::move(layer));
}

at::Tensor UNetBlockImpl::forward(at::Tensor x, const at::Tensor& emb) {
  for (auto& layer : layers) x = layer->forward(x, emb);
  return x;
}

UNetModelImpl::UNetModelImpl(UNetConfig config) : config_(std::move(config)) {
  config_.validate();
  const auto& c = config_;
  const int64_t emb = 4 * c.model_channels;
  auto time_embed = sequential_names(*this, "time_embed");
  time_embed_in_ = time_embed->register_module("0", clipguide::linear(c.model_channels, emb));
  time_embed_out_ = time_embed->register_module("2", clipguide::linear(emb, emb));
  if (c.num_classes > 0) label_emb_ = register_module("label_emb", clipguide::embedding(c.num_classes, emb));
  auto heads = [&](int64_t channels, bool upsampling) {
    if (c.num_head_channels > 0) return channels / c.num_head_channels;
    return upsampling && c.num_heads_upsample > 0 ? c.num_heads_upsample : c.num_heads;
  };
  auto has_attention = [&](int64_t ds) {
    return std::find(c.attention_ds.begin(), c.attention_ds.end(), ds) != c.attention_ds.end();
  };
  auto resblock = [&](int64_t in, int64_t out, ResBlock::Resample resample = ResBlock::Resample::kNone) {
    return std::make_shared<ResBlock>(in, emb, out, c.use_scale_shift_norm, resample);
  };
  auto attention = [&](int64_t channels, bool upsampling) {
    return std::make_shared<AttentionBlock>(channels, heads(channels, upsampling), c.use_new_attention_order);
  };

  auto inputs = sequential_names(*this, "input_blocks");
  auto add_input = [&](UNetBlock block) {
    inputs->register_module(std::to_string(input_blocks_.size()), block);
    input_blocks_.push_back(block);
  };
  int64_t ch = c.level_channels(0);
  const int64_t input_ch = ch;
  UNetBlock first;
  first->add(std::make_shared<ConvLayer>(c.in_channels, ch));
  add_input(first);
  std::vector<int64_t> skip_channels = {ch};
  int64_t ds = 1;
  for (int64_t level = 0; level < c.levels(); ++level) {
    for (int64_t i = 0; i < c.num_res_blocks; ++i) {
      UNetBlock block;
      block->add(resblock(ch, c.level_channels(level)));
      ch = c.level_channels(level);
      if (has_attention(ds)) block->add(attention(ch, false));
      add_input(block);
      skip_channels.push_back(ch);
    }
    if (level != c.levels() - 1) {
      UNetBlock block;
      if (c.resblock_updown) block->add(resblock(ch, ch, ResBlock::Resample::kDown));
      else block->add(std::make_shared<DownsampleLayer>(ch, c.conv_resample));
      add_input(block);
      skip_channels.push_back(ch);
      ds *= 2;
    }
  }
  middle_block_ = register_module("middle_block", UNetBlock());
  middle_block_->add(resblock(ch, ch));
  middle_block_->add(attention(ch, false));
  middle_block_->add(resblock(ch, ch));

  auto outputs = sequential_names(*this, "output_blocks");
  for (int64_t level = c.levels() - 1; level >= 0; --level) {
    for (int64_t i = 0; i <= c.num_res_blocks; ++i) {
      UNetBlock block;
      block->add(resblock(ch + skip_channels.back(), c.level_channels(level)));
      skip_channels.pop_back();
      ch = c.level_channels(level);
      if (has_attention(ds)) block->add(attention(ch, true));
      if (level > 0 && i == c.num_res_blocks) {
        if (c.resblock_updown) block->add(resblock(ch, ch, ResBlock::Resample::kUp));
        else block->add(std::make_shared<UpsampleLayer>(ch, c.conv_resample));
        ds /= 2;
      }
      outputs->register_module(std::to_string(output_blocks_.size()), block);
      output_blocks_.push_back(block);
    }
  }
  auto out = sequential_names(*this, "out");
  out_norm_ = out->register_module("0", Norm32(ch));
  out_conv_ = out->register_module("2", conv(input_ch, c.out_channels, 3));
}

at::Tensor UNetModelImpl::run_block(UNetBlock& block, const at::Tensor& h, const at::Tensor& emb) {
  if (!checkpointing_ || !c10::GradMode::is_enabled()) return block->forward(h, emb);
  std::vector<at::Tensor> trained;  // what else the recomputation must pass gradients to
  for (const auto& p : block->parameters())
    if (p.requires_grad()) trained.push_back(p);
  if (emb.requires_grad()) trained.push_back(emb);
  return clipguide::checkpoint([&block, emb](const at::Tensor& x) { return block->forward(x, emb); }, h, trained);
}

at::Tensor UNetModelImpl::forward(const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& labels) {
  const auto& c = config_;
  if (x.dim() != 4 || x.size(1) != c.in_channels)
    throw Error("diffusion model: input " + shape_str(x.sizes()) + ", expected (B, " + std::to_string(c.in_channels) + ", H, W)");
  const int64_t f = c.size_factor();
  if (x.size(2) % f != 0 || x.size(3) % f != 0)
    throw Error("diffusion model: " + std::to_string(x.size(3)) + "x" + std::to_string(x.size(2)) +
                " is not a multiple of " + std::to_string(f) + " (2^(levels - 1)) on each side");
  if (timesteps.dim() != 1 || timesteps.size(0) != x.size(0))
    throw Error("diffusion model: timesteps " + shape_str(timesteps.sizes()) + ", expected one per image (" +
                std::to_string(x.size(0)) + ")");
  if (labels.defined() != (c.num_classes > 0))
    throw Error(c.num_classes > 0 ? "diffusion model: class-conditional, needs one label per image"
                                  : "diffusion model: unconditional, given class labels");
  auto emb = time_embed_out_(at::silu(time_embed_in_(timestep_embedding(timesteps, c.model_channels))));  // (B, E)
  if (labels.defined()) emb = emb + label_emb_(labels);
  std::vector<at::Tensor> skips;
  auto h = x;
  for (auto& block : input_blocks_) {
    h = run_block(block, h, emb);
    skips.push_back(h);
  }
  h = run_block(middle_block_, h, emb);
  for (auto& block : output_blocks_) {
    h = run_block(block, at::cat({h, skips.back()}, 1), emb);
    skips.pop_back();
  }
  return out_conv_(at::silu(out_norm_(h))).to(at::kFloat);  // (B, out_channels, H, W)
}

}  // namespace clipguide::generators::diffusion
