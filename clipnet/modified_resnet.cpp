// Bottleneck, AttentionPool2d and ModifiedResNet (see modified_resnet.h).
// ref: openai/CLIP clip/model.py (openai-clip 1.0.1) Bottleneck, AttentionPool2d, ModifiedResNet
//
// Shapes: B batch, H x W image, C channels, S final grid side, N = S*S + 1 tokens, E embed dim, D head width.
#include "clipnet/modified_resnet.h"

#include "core/grad_ops.h"
#include "core/skip_init.h"

#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <torch/nn/init.h>

#include <cmath>

namespace clipguide::clipnet {
namespace {

at::Tensor avg_pool(const at::Tensor& x, int64_t k) { return k > 1 ? at::avg_pool2d(x, {k, k}) : x; }

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel) {
  return clipguide::conv2d(torch::nn::Conv2dOptions(in, out, kernel).padding(kernel / 2).bias(false));
}

}  // namespace

// --- Bottleneck ------------------------------------------------------------------------------------------
BottleneckImpl::BottleneckImpl(BottleneckOptions options_) : options(std::move(options_)) { reset(); }

void BottleneckImpl::reset() {
  const int64_t in = options.inplanes(), planes = options.planes(), out = planes * kExpansion;
  // All convs have stride 1; striding is an average pool after conv2 (anti-aliasing).
  conv1 = register_module("conv1", conv(in, planes, 1));
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3));
  bn2 = register_module("bn2", torch::nn::BatchNorm2d(planes));
  conv3 = register_module("conv3", conv(planes, out, 1));
  bn3 = register_module("bn3", torch::nn::BatchNorm2d(out));
  if (options.stride() > 1 || in != out) {
    downsample = register_module("downsample", torch::nn::Sequential(conv(in, out, 1), torch::nn::BatchNorm2d(out)));
  }
}

at::Tensor BottleneckImpl::forward(const at::Tensor& x) {
  auto out = at::relu(bn1(conv1(x)));           // (B, planes, H, W)
  out = at::relu(bn2(conv2(out)));
  out = avg_pool(out, options.stride());         // (B, planes, H/s, W/s)
  out = bn3(conv3(out));                         // (B, 4*planes, H/s, W/s)
  auto identity = downsample ? downsample->forward(avg_pool(x, options.stride())) : x;
  return at::relu(out + identity);
}

// --- AttentionPool2d -------------------------------------------------------------------------------------
AttentionPool2dImpl::AttentionPool2dImpl(AttentionPool2dOptions options_) : options(std::move(options_)) { reset(); }

void AttentionPool2dImpl::reset() {
  const int64_t c = options.embed_dim(), s = options.spacial_dim();
  TORCH_CHECK(c % options.heads() == 0, "attention pool width ", c, " is not divisible by heads ", options.heads());
  positional_embedding =
      register_parameter("positional_embedding", at::randn({s * s + 1, c}) / std::sqrt(static_cast<double>(c)));
  k_proj = register_module("k_proj", clipguide::linear(c, c));
  q_proj = register_module("q_proj", clipguide::linear(c, c));
  v_proj = register_module("v_proj", clipguide::linear(c, c));
  c_proj = register_module("c_proj", clipguide::linear(c, options.output_dim()));
}

at::Tensor AttentionPool2dImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), s = x.size(2), h = options.heads(), d = c / h;
  TORCH_CHECK(c == options.embed_dim() && x.size(3) == s, "attention pool expects (B, ", options.embed_dim(),
              ", S, S), got ", x.sizes());
  auto tokens = x.reshape({b, c, s * s}).permute({0, 2, 1});                 // (B, S*S, C)
  tokens = at::cat({tokens.mean(1, /*keepdim=*/true), tokens}, 1);          // (B, N, C)
  tokens = tokens + resize_positional_embedding(positional_embedding, s).to(tokens.scalar_type());
  // Only the mean token's output is kept, so only its query is computed; keys and values use every token.
  auto q = q_proj(tokens.narrow(1, 0, 1)).view({b, 1, h, d}).transpose(1, 2);  // (B, H, 1, D)
  auto k = k_proj(tokens).view({b, s * s + 1, h, d}).transpose(1, 2);         // (B, H, N, D)
  auto v = v_proj(tokens).view({b, s * s + 1, h, d}).transpose(1, 2);         // (B, H, N, D)
  auto out = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/false);
  return c_proj(out.transpose(1, 2).reshape({b, c}));  // (B, E)
}

// --- ModifiedResNet --------------------------------------------------------------------------------------
ModifiedResNetImpl::ModifiedResNetImpl(ModifiedResNetOptions options_) : options(std::move(options_)) { reset(); }

void ModifiedResNetImpl::reset() {
  const int64_t w = options.width();
  TORCH_CHECK(options.image_size() % 32 == 0, "ResNet image size must be a multiple of 32, got ", options.image_size());
  conv1 = register_module(
      "conv1", clipguide::conv2d(torch::nn::Conv2dOptions(3, w / 2, 3).stride(2).padding(1).bias(false)));
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(w / 2));
  conv2 = register_module("conv2", conv(w / 2, w / 2, 3));
  bn2 = register_module("bn2", torch::nn::BatchNorm2d(w / 2));
  conv3 = register_module("conv3", conv(w / 2, w, 3));
  bn3 = register_module("bn3", torch::nn::BatchNorm2d(w));

  int64_t inplanes = w;
  auto make_layer = [&](int64_t planes, int64_t blocks, int64_t stride) {
    torch::nn::Sequential layer;
    layer->push_back(Bottleneck(BottleneckOptions(inplanes, planes).stride(stride)));
    inplanes = planes * BottleneckImpl::kExpansion;
    for (int64_t i = 1; i < blocks; ++i) layer->push_back(Bottleneck(BottleneckOptions(inplanes, planes)));
    return layer;
  };
  const auto& depth = options.layers();
  layer1 = register_module("layer1", make_layer(w, depth[0], 1));
  layer2 = register_module("layer2", make_layer(w * 2, depth[1], 2));
  layer3 = register_module("layer3", make_layer(w * 4, depth[2], 2));
  layer4 = register_module("layer4", make_layer(w * 8, depth[3], 2));
  attnpool = register_module("attnpool", AttentionPool2d(AttentionPool2dOptions(
                                             options.image_size() / 32, w * 32, options.heads(), options.output_dim())));
}

at::Tensor ModifiedResNetImpl::forward(const at::Tensor& image) {
  TORCH_CHECK(image.dim() == 4 && image.size(1) == 3, "encode_image expects (B, 3, H, W), got ", image.sizes());
  TORCH_CHECK(image.size(2) == image.size(3) && image.size(2) % 32 == 0,
              "ResNet input must be square with a side that is a multiple of 32, got ", image.sizes());
  auto x = image.to(conv1->weight.scalar_type());
  // On the CPU, channels-last activations spare oneDNN its layout conversions: convolution forward and
  // backward a third faster in clip-train's step at 64 px (weights, and so their gradients and optimiser
  // state, stay contiguous; results equal to float rounding).
  if (x.device().is_cpu()) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  x = at::relu(bn1(conv1(x)));  // (B, w/2, H/2, W/2)
  x = at::relu(bn2(conv2(x)));
  x = at::relu(bn3(conv3(x)));  // (B, w, H/2, W/2)
  x = at::avg_pool2d(x, {2, 2});  // (B, w, H/4, W/4)
  // Stages, checkpointed when asked (BatchNorm running statistics are restored after the recomputation).
  auto stage = [&](const torch::nn::Sequential& holder, const at::Tensor& t) {
    std::shared_ptr<torch::nn::SequentialImpl> layer = holder.ptr();
    if (!grad_checkpointing) return layer->forward(t);
    return checkpoint([layer](const at::Tensor& u) { return layer->forward(u); }, t, layer->parameters(),
                      layer->buffers());
  };
  x = stage(layer1, x);  // (B, 4w, H/4, W/4)
  x = stage(layer2, x);  // (B, 8w, H/8, W/8)
  x = stage(layer3, x);  // (B, 16w, H/16, W/16)
  x = stage(layer4, x);  // (B, 32w, S, S)
  return attnpool(x);    // (B, E)
}

}  // namespace clipguide::clipnet
