// VisionTransformer (see vision_transformer.h).
// ref: openai/CLIP clip/model.py (openai-clip 1.0.1) VisionTransformer
//
// Shapes: B batch, H x W image, P patch, G grid side, N = G*G + 1 tokens, C width, E embed dim.
#include "clipnet/vision_transformer.h"
#include "core/skip_init.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/randn.h>

#include <cmath>

namespace clipguide::clipnet {

VisionTransformerImpl::VisionTransformerImpl(VisionTransformerOptions options_) : options(std::move(options_)) {
  reset();
}

void VisionTransformerImpl::reset() {
  const int64_t c = options.width(), p = options.patch_size();
  TORCH_CHECK(p > 0 && options.image_size() % p == 0, "image size ", options.image_size(),
              " is not a multiple of patch size ", p);
  const int64_t grid = options.image_size() / p;
  const double scale = std::pow(static_cast<double>(c), -0.5);
  // Registration order follows OpenAI's module so named_parameters() lists keys like its state dict.
  conv1 = register_module("conv1", clipguide::conv2d(torch::nn::Conv2dOptions(3, c, p).stride(p).bias(false)));
  class_embedding = register_parameter("class_embedding", scale * at::randn({c}));
  positional_embedding = register_parameter("positional_embedding", scale * at::randn({grid * grid + 1, c}));
  ln_pre = register_module("ln_pre", LayerNormFp32(c));
  transformer = register_module(
      "transformer", Transformer(TransformerOptions(c, options.layers(), options.heads())
                                     .mlp_ratio(options.mlp_ratio())
                                     .activation(options.activation())));
  ln_post = register_module("ln_post", LayerNormFp32(c));
  proj = register_parameter("proj", scale * at::randn({c, options.output_dim()}));
}

at::Tensor VisionTransformerImpl::forward(const at::Tensor& image) {
  TORCH_CHECK(image.dim() == 4 && image.size(1) == 3, "encode_image expects (B, 3, H, W), got ", image.sizes());
  const int64_t p = options.patch_size();
  TORCH_CHECK(image.size(2) == image.size(3) && image.size(2) % p == 0,
              "ViT input must be square with a side that is a multiple of the patch size ", p, ", got ", image.sizes());
  const int64_t b = image.size(0), c = options.width(), grid = image.size(2) / p;
  // conv1 (kernel = stride = p) as one GEMM over the non-overlapping patches, each flattened in the weight's
  // (channel, row, column) order: its backward is two GEMMs as well, where oneDNN's backward of the 32x32
  // convolution took about six times as long (bench/diffusion_bench --profile).
  const int64_t patch = 3 * p * p;
  const auto patches = image.to(conv1->weight.scalar_type())
                           .reshape({b, 3, grid, p, grid, p})
                           .permute({0, 2, 4, 1, 3, 5})
                           .reshape({b * grid * grid, patch});                                 // (B*G*G, 3*p*p)
  auto x = at::mm(patches, conv1->weight.reshape({c, patch}).t()).view({b, grid * grid, c});  // (B, G*G, C)
  auto cls = class_embedding.to(x.scalar_type()).view({1, 1, c}).expand({b, 1, c});  // (B, 1, C)
  x = at::cat({cls, x}, 1);                                                           // (B, N, C)
  x = x + resize_positional_embedding(positional_embedding, grid).to(x.scalar_type());
  x = ln_pre(x);
  // Only the class token is pooled, so the last block computes only its row (the same result, less work).
  x = ln_post(transformer->forward_first_token(x));  // (B, C): class token
  return at::matmul(x, proj.to(x.scalar_type()));  // (B, E)
}

}  // namespace clipguide::clipnet
