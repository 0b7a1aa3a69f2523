// Tests for core/state_dict (what adopting file tensors shares and what it copies) and core/skip_init
// (the layers are torch::nn's, drawing the same initial values outside SkipInit and none inside; a model
// built under SkipInit and loaded strictly computes exactly what a normally built one does).
#include "core/state_dict.h"

#include "clipnet/clip_model.h"
#include "clipnet/config.h"
#include "core/skip_init.h"
#include "test_util.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <torch/nn/modules/container/sequential.h>

namespace clipguide {
namespace {

TensorMap state_of(torch::nn::Module& m) {
  TensorMap out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

TEST(StateDict, AdoptsFileTensorsThatNeedNoConversionAndCopiesTheRest) {
  torch::nn::Linear a(4, 3), b(4, 3);
  TensorMap file = {{"weight", at::randn({3, 4})}, {"bias", at::randn({3}).to(at::kHalf)}};
  load_state_dict(*a, file, /*strict=*/true, {}, /*adopt=*/true);
  EXPECT_EQ(a->weight.data_ptr(), file["weight"].data_ptr());  // shared: nothing copied
  EXPECT_NE(a->bias.data_ptr(), file["bias"].data_ptr());      // fp16 into fp32: cast, so copied
  EXPECT_EQ(a->bias.scalar_type(), at::kFloat);
  EXPECT_TRUE(a->weight.requires_grad());  // still the module's parameter
  EXPECT_TENSOR_CLOSE(a->bias, file["bias"].to(at::kFloat), 0.0, 0.0);

  load_state_dict(*b, file, /*strict=*/true);  // without adopt: copies
  EXPECT_NE(b->weight.data_ptr(), file["weight"].data_ptr());
  EXPECT_TENSOR_CLOSE(b->weight, file["weight"], 0.0, 0.0);

  // One storage for two parameters (tied entries) is adopted once: the parameters stay independent.
  torch::nn::Linear c(torch::nn::LinearOptions(3, 3).bias(false)), d(torch::nn::LinearOptions(3, 3).bias(false));
  torch::nn::Sequential pair(c, d);
  at::Tensor shared = at::randn({3, 3});
  load_state_dict(*pair, {{"0.weight", shared}, {"1.weight", shared}}, true, {}, /*adopt=*/true);
  EXPECT_NE(c->weight.data_ptr(), d->weight.data_ptr());
  EXPECT_TENSOR_CLOSE(c->weight, d->weight, 0.0, 0.0);
  // A transposed view has other strides: copied into the parameter's layout.
  torch::nn::Linear e(torch::nn::LinearOptions(3, 3).bias(false));
  at::Tensor t = at::randn({3, 3}).t();
  load_state_dict(*e, {{"weight", t}}, true, {}, /*adopt=*/true);
  EXPECT_TRUE(e->weight.is_contiguous());
  EXPECT_TENSOR_CLOSE(e->weight, t, 0.0, 0.0);
}

TEST(SkipInit, LayersAreTorchsOwnOutsideAndUninitialisedShapesInside) {
  EXPECT_FALSE(init_skipped());
  at::manual_seed(7);
  torch::nn::Linear reference(torch::nn::LinearOptions(5, 6));
  torch::nn::Conv2d conv_reference(torch::nn::Conv2dOptions(3, 4, 3).padding(1));
  torch::nn::Embedding embed_reference(10, 4);
  at::manual_seed(7);
  auto ours = linear(5, 6);
  auto conv_ours = conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1));
  auto embed_ours = embedding(10, 4);
  EXPECT_TENSOR_CLOSE(ours->weight, reference->weight, 0.0, 0.0);  // the same draws, in the same order
  EXPECT_TENSOR_CLOSE(conv_ours->bias, conv_reference->bias, 0.0, 0.0);
  EXPECT_TENSOR_CLOSE(embed_ours->weight, embed_reference->weight, 0.0, 0.0);
  {
    SkipInit skip;
    EXPECT_TRUE(init_skipped());
    {
      SkipInit nested;
    }
    EXPECT_TRUE(init_skipped());  // a nested scope gives back what it found
    auto l = linear(300, 200);
    auto c = conv2d(torch::nn::Conv2dOptions(6, 8, {3, 5}).stride(2).padding(1).groups(2));
    auto m = embedding(1000, 16);
    EXPECT_EQ(l->weight.sizes(), (std::vector<int64_t>{200, 300}));
    EXPECT_EQ(l->bias.sizes(), (std::vector<int64_t>{200}));
    EXPECT_EQ(l->options.in_features(), 300);
    EXPECT_EQ(c->weight.sizes(), (std::vector<int64_t>{8, 3, 3, 5}));
    EXPECT_EQ(m->weight.sizes(), (std::vector<int64_t>{1000, 16}));
    EXPECT_EQ(l->named_parameters()["weight"].sizes(), l->weight.sizes());  // the registered parameter itself
    at::NoGradGuard no_grad;
    EXPECT_EQ(l(at::randn({2, 300})).sizes(), (std::vector<int64_t>{2, 200}));
    EXPECT_EQ(c(at::randn({1, 6, 9, 9})).sizes(), (std::vector<int64_t>{1, 8, 5, 4}));
    EXPECT_EQ(m(at::randint(1000, {3}, at::kLong)).sizes(), (std::vector<int64_t>{3, 16}));
    EXPECT_THROW(conv2d(torch::nn::Conv2dOptions(3, 4, 3).groups(2)), Error);
  }
  EXPECT_FALSE(init_skipped());
}

TEST(SkipInit, ModelBuiltWithoutInitialValuesAndLoadedComputesTheSame) {
  auto config = clipnet::ClipConfig::builtin("ViT-B-32");
  config.vision.width = 64, config.vision.layers = {2}, config.vision.head_width = 32, config.vision.image_size = 64;
  config.text.width = 32, config.text.layers = 2, config.text.heads = 2, config.text.vocab_size = 300;
  config.embed_dim = 16;
  clipnet::ClipModel normal(config);
  TensorMap weights = state_of(*normal);
  clipnet::ClipModel skipped{nullptr};
  {
    SkipInit skip;
    skipped = clipnet::ClipModel(config);
  }
  load_state_dict(*skipped, weights, /*strict=*/true, {}, /*adopt=*/true);
  normal->eval(), skipped->eval();
  at::NoGradGuard no_grad;
  at::Tensor image = at::randn({2, 3, 64, 64});
  at::Tensor tokens = at::randint(300, {2, config.text.context_length}, at::kLong);
  EXPECT_TENSOR_CLOSE(skipped->encode_image(image), normal->encode_image(image), 0.0, 0.0);
  EXPECT_TENSOR_CLOSE(skipped->encode_text(tokens), normal->encode_text(tokens), 0.0, 0.0);
}

}  // namespace
}  // namespace clipguide
