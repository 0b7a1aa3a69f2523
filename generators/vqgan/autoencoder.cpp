// taming's Encoder/Decoder in LibTorch (see autoencoder.h).
// ref: taming-transformers-rom1504 0.0.6 taming/modules/diffusionmodules/model.py
// Shapes: B batch, C channels, H x W spatial.
#include "generators/vqgan/autoencoder.h"

#include "core/grad_ops.h"
#include "core/skip_init.h"

#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/upsample_nearest2d.h>

#include <cmath>
#include <functional>

namespace clipguide::generators::vqgan {

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  // 3x3 convs pad by 1, except the strided one in Downsample, which pads by hand.
  const int64_t padding = kernel == 3 && stride == 1 ? 1 : 0;
  return clipguide::conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}

}  // namespace

// One fused kernel forward and one backward (x * sigmoid(x) as taming writes it takes two forward and four
// backward passes over the activation): a sixth of a guidance step's time on CPU went into those passes.
at::Tensor swish(const at::Tensor& x) { return at::silu(x); }

torch::nn::GroupNorm make_normalize(int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, channels).eps(1e-6).affine(true));
}

// ---------------------------------------------------------------------------------------------------------
ResnetBlockImpl::ResnetBlockImpl(int64_t in_channels, int64_t out_channels) {
  norm1 = register_module("norm1", make_normalize(in_channels));
  conv1 = register_module("conv1", conv(in_channels, out_channels, 3));
  norm2 = register_module("norm2", make_normalize(out_channels));
  conv2 = register_module("conv2", conv(out_channels, out_channels, 3));
  if (in_channels != out_channels) nin_shortcut = register_module("nin_shortcut", conv(in_channels, out_channels, 1));
}

at::Tensor ResnetBlockImpl::forward(const at::Tensor& x) {
  auto h = conv1(swish(norm1(x)));  // (B, C_out, H, W)
  h = conv2(swish(norm2(h)));
  return (nin_shortcut ? nin_shortcut(x) : x) + h;
}

// ---------------------------------------------------------------------------------------------------------
AttnBlockImpl::AttnBlockImpl(int64_t channels) {
  norm = register_module("norm", make_normalize(channels));
  q = register_module("q", conv(channels, channels, 1));
  k = register_module("k", conv(channels, channels, 1));
  v = register_module("v", conv(channels, channels, 1));
  proj_out = register_module("proj_out", conv(channels, channels, 1));
}

at::Tensor AttnBlockImpl::forward(const at::Tensor& x) {
  auto h_ = norm(x);
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // Same op sequence as taming (bmm, scale, softmax) so results match to rounding.
  auto qs = q(h_).reshape({b, c, h * w}).permute({0, 2, 1});   // (B, HW, C)
  auto ks = k(h_).reshape({b, c, h * w});                      // (B, C, HW)
  auto weights = at::bmm(qs, ks) * std::pow(static_cast<double>(c), -0.5);  // (B, HW_q, HW_k)
  weights = at::softmax(weights, 2);
  auto vs = v(h_).reshape({b, c, h * w});                      // (B, C, HW_k)
  auto out = at::bmm(vs, weights.permute({0, 2, 1})).reshape({b, c, h, w});  // (B, C, H, W)
  return x + proj_out(out);
}

// ---------------------------------------------------------------------------------------------------------
UpsampleImpl::UpsampleImpl(int64_t channels, bool with_conv) {
  if (with_conv) conv = register_module("conv", vqgan::conv(channels, channels, 3));
}

at::Tensor UpsampleImpl::forward(const at::Tensor& x) {
  auto h = at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)}, 2.0, 2.0);  // (B, C, 2H, 2W)
  return conv ? conv(h) : h;
}

DownsampleImpl::DownsampleImpl(int64_t channels, bool with_conv) {
  if (with_conv) conv = register_module("conv", vqgan::conv(channels, channels, 3, 2));
}

at::Tensor DownsampleImpl::forward(const at::Tensor& x) {
  if (!conv) return at::avg_pool2d(x, {2, 2}, {2, 2});
  // No asymmetric padding in conv2d: pad right and bottom only, as taming does.
  return conv(at::constant_pad_nd(x, {0, 1, 0, 1}, 0.0));  // (B, C, ceil(H/2), ceil(W/2))
}

// ---------------------------------------------------------------------------------------------------------
void LevelImpl::add_block(int64_t in_channels, int64_t out_channels, bool with_attn) {
  if (!block_list_) {
    block_list_ = register_module("block", torch::nn::ModuleList());
    attn_list_ = register_module("attn", torch::nn::ModuleList());
  }
  blocks.push_back(ResnetBlock(in_channels, out_channels));
  block_list_->push_back(blocks.back());
  if (with_attn) {
    attns.push_back(AttnBlock(out_channels));
    attn_list_->push_back(attns.back());
  }
}

at::Tensor LevelImpl::forward_blocks(at::Tensor x) {
  for (size_t i = 0; i < blocks.size(); ++i) {
    x = blocks[i](x);
    if (!attns.empty()) x = attns[i](x);
  }
  return x;
}

MiddleImpl::MiddleImpl(int64_t channels) {
  block_1 = register_module("block_1", ResnetBlock(channels, channels));
  attn_1 = register_module("attn_1", AttnBlock(channels));
  block_2 = register_module("block_2", ResnetBlock(channels, channels));
}

at::Tensor MiddleImpl::forward(const at::Tensor& x) { return block_2(attn_1(block_1(x))); }

// ---------------------------------------------------------------------------------------------------------
EncoderImpl::EncoderImpl(const VqganConfig& config) {
  config.validate();
  const int64_t levels = config.num_levels();
  conv_in = register_module("conv_in", conv(config.in_channels, config.ch, 3));
  auto down_list = register_module("down", torch::nn::ModuleList());
  int64_t block_in = config.ch;
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t block_out = config.ch * config.ch_mult[i];
    Level level;
    for (int64_t j = 0; j < config.num_res_blocks; ++j) {
      level->add_block(block_in, block_out, config.encoder_attn[i]);
      block_in = block_out;
    }
    if (i != levels - 1) {
      level->downsample = level->register_module("downsample", Downsample(block_in, config.resamp_with_conv));
    }
    down_list->push_back(level);
    down.push_back(level);
  }
  mid = register_module("mid", Middle(block_in));
  norm_out = register_module("norm_out", make_normalize(block_in));
  conv_out = register_module("conv_out", conv(block_in, config.double_z ? 2 * config.z_channels : config.z_channels, 3));
}

at::Tensor EncoderImpl::forward(const at::Tensor& x) {
  auto h = conv_in(x);  // (B, ch, H, W)
  for (auto& level : down) {
    h = level->forward_blocks(h);
    if (level->downsample) h = level->downsample(h);
  }
  h = mid(h);                          // (B, ch * ch_mult[-1], h, w)
  return conv_out(swish(norm_out(h)));  // (B, Z or 2Z, h, w)
}

// ---------------------------------------------------------------------------------------------------------
DecoderImpl::DecoderImpl(const VqganConfig& config) {
  config.validate();
  const int64_t levels = config.num_levels();
  int64_t block_in = config.ch * config.ch_mult[levels - 1];
  conv_in = register_module("conv_in", conv(config.z_channels, block_in, 3));
  mid = register_module("mid", Middle(block_in));
  // Built lowest level first (taming prepends), stored and registered in level order.
  std::vector<Level> levels_built(levels, Level(nullptr));
  for (int64_t i = levels - 1; i >= 0; --i) {
    const int64_t block_out = config.ch * config.ch_mult[i];
    Level level;
    for (int64_t j = 0; j < config.num_res_blocks + 1; ++j) {
      level->add_block(block_in, block_out, config.decoder_attn[i]);
      block_in = block_out;
    }
    if (i != 0) level->upsample = level->register_module("upsample", Upsample(block_in, config.resamp_with_conv));
    levels_built[i] = level;
  }
  auto up_list = register_module("up", torch::nn::ModuleList());
  for (auto& level : levels_built) {
    up_list->push_back(level);
    up.push_back(level);
  }
  norm_out = register_module("norm_out", make_normalize(block_in));
  conv_out = register_module("conv_out", conv(block_in, config.out_ch, 3));
}

at::Tensor DecoderImpl::forward(const at::Tensor& z) {
  // One stage: plain, or checkpointed with the parameters of `modules` that require grad.
  auto stage = [&](const std::function<at::Tensor(const at::Tensor&)>& fn, const at::Tensor& x,
                   std::initializer_list<const torch::nn::Module*> modules) {
    if (!checkpointing_) return fn(x);
    std::vector<at::Tensor> trained;
    for (const auto* m : modules)
      for (const auto& p : m->parameters())
        if (p.requires_grad()) trained.push_back(p);
    return clipguide::checkpoint(fn, x, trained);
  };
  auto h = stage([&](const at::Tensor& x) { return mid(conv_in(x)); }, z, {conv_in.get(), mid.get()});  // (B, ch * ch_mult[-1], h, w)
  // Checkpointed block by block (not level by level): backward then holds one block's activations at a time,
  // at full resolution a third of a level's, for the same recomputation.
  for (auto it = up.rbegin(); it != up.rend(); ++it) {
    Level& level = *it;
    for (size_t i = 0; i < level->blocks.size(); ++i) {
      ResnetBlock& block = level->blocks[i];
      if (level->attns.empty()) {
        h = stage([&block](const at::Tensor& x) { return block(x); }, h, {block.get()});
      } else {
        AttnBlock& attn = level->attns[i];
        h = stage([&block, &attn](const at::Tensor& x) { return attn(block(x)); }, h, {block.get(), attn.get()});
      }
    }
    if (level->upsample) {
      h = stage([&level](const at::Tensor& x) { return level->upsample(x); }, h, {level->upsample.get()});
    }
  }
  return stage([&](const at::Tensor& x) { return conv_out(swish(norm_out(x))); }, h,
               {norm_out.get(), conv_out.get()});  // (B, out_ch, H, W)
}

}  // namespace clipguide::generators::vqgan
