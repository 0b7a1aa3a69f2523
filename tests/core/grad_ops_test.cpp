// Tests for core/grad_ops: forward values and the exact backward rules of replace_grad and
// clamp_with_grad (the latter checked element by element against VQGAN+CLIP's formula), and gradient
// checkpointing: the gradients of every parameter of ViT and ResNet CLIPs (fp32 and under bf16 autocast)
// equal the plain ones within 1e-6, BatchNorm statistics move once, random draws are replayed.
#include "core/grad_ops.h"

#include "clipnet/clip_model.h"
#include "test_util.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/function.h>

#include <cstdio>

namespace clipguide {
namespace {

TEST(ReplaceGrad, ForwardIsFirstBackwardGoesToSecond) {
  auto a = at::randn({2, 3}, at::kDouble).requires_grad_(true);
  auto b = at::randn({1, 3}, at::kDouble).requires_grad_(true);  // broadcast: gradient summed to its shape
  auto y = replace_grad(a, b);
  EXPECT_TRUE(at::equal(y, a));
  auto w = at::randn({2, 3}, at::kDouble);
  (y * w).sum().backward();
  EXPECT_FALSE(a.grad().defined() && a.grad().abs().sum().item<double>() != 0.0);
  EXPECT_TENSOR_CLOSE(b.grad(), w.sum(0, true), 1e-12, 0.0);
}

TEST(ReplaceGrad, StraightThroughQuantisation) {
  // round() has zero gradient; through replace_grad the gradient is the identity's.
  auto x = at::randn({5}, at::kDouble).mul(3).requires_grad_(true);
  auto y = replace_grad(x.round(), x);
  y.pow(2).sum().backward();
  EXPECT_TENSOR_CLOSE(x.grad(), 2 * x.detach().round(), 1e-12, 0.0);
}

TEST(ClampWithGrad, ForwardClampsBackwardFollowsVqganClipRule) {
  auto x = at::tensor({-0.5, 0.2, 0.7, 1.4, 1.4, -0.5}, at::kDouble).requires_grad_(true);
  auto y = clamp_with_grad(x, 0.0, 1.0);
  EXPECT_TENSOR_CLOSE(y, x.detach().clamp(0, 1), 0.0, 0.0);
  auto g = at::tensor({-1.0, 2.0, -3.0, 4.0, -5.0, 6.0}, at::kDouble);
  y.backward(g);
  // Descent moves x by -g. Below the range (x=-0.5): pass when -g > 0 (g<0) i.e. the step moves back in.
  // Above (x=1.4): pass when g > 0 (the step lowers x). Inside: always pass.
  auto expected = at::tensor({-1.0, 2.0, -3.0, 4.0, 0.0, 0.0}, at::kDouble);
  EXPECT_TENSOR_CLOSE(x.grad(), expected, 0.0, 0.0);
  // The formula itself, on random data.
  auto x2 = at::randn({1000}, at::kDouble).mul(2).requires_grad_(true);
  auto g2 = at::randn({1000}, at::kDouble);
  clamp_with_grad(x2, 0.0, 1.0).backward(g2);
  auto x2d = x2.detach();
  EXPECT_TENSOR_CLOSE(x2.grad(), g2 * (g2 * (x2d - x2d.clamp(0, 1))).ge(0), 0.0, 0.0);
}

TEST(ClampWithGrad, InsideRangeMatchesFiniteDifferences) {
  auto x = at::rand({50}, at::kDouble).mul(0.8).add(0.1).requires_grad_(true);
  auto w = at::randn({50}, at::kDouble);
  (clamp_with_grad(x, 0.0, 1.0) * w).sum().backward();
  EXPECT_TENSOR_CLOSE(x.grad(), w, 1e-12, 0.0);  // identity inside the range
}

TEST(Checkpoint, RecomputesInBackwardWithTheSameGradients) {
  auto w = at::randn({8, 8}, at::kDouble).requires_grad_(true);
  auto x = at::randn({4, 8}, at::kDouble).requires_grad_(true);
  int calls = 0;
  auto fn = [&](const at::Tensor& t) { ++calls; return at::tanh(t.matmul(w)).matmul(w); };
  auto g = at::randn({4, 8}, at::kDouble);
  fn(x).backward(g);
  const at::Tensor gx = x.grad().clone(), gw = w.grad().clone();
  x.mutable_grad().zero_(), w.mutable_grad().zero_();
  calls = 0;
  auto y = checkpoint(fn, x, {w});
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(y.requires_grad());
  y.backward(g);
  EXPECT_EQ(calls, 2);  // run again in backward
  EXPECT_TENSOR_CLOSE(x.grad(), gx, 0.0, 0.0);
  EXPECT_TENSOR_CLOSE(w.grad(), gw, 0.0, 0.0);
  // Nothing requires grad, or no grad mode: a plain call.
  calls = 0;
  {
    at::NoGradGuard no_grad;
    EXPECT_FALSE(checkpoint(fn, x, {w}).requires_grad());
  }
  EXPECT_EQ(calls, 1);
}

TEST(Checkpoint, ReplaysTheForwardsRandomDraws) {
  auto x = at::randn({64}).requires_grad_(true);
  auto fn = [](const at::Tensor& t) { return at::dropout(t * 3, 0.5, /*train=*/true); };
  at::manual_seed(11);
  fn(x).sum().backward();
  const at::Tensor plain = x.grad().clone();
  const at::Tensor next_plain = at::rand({4});
  x.mutable_grad().zero_();
  at::manual_seed(11);
  auto y = checkpoint(fn, x, {});
  const at::Tensor next = at::rand({4});  // the generator moved on as without checkpointing
  y.sum().backward();
  EXPECT_TENSOR_CLOSE(x.grad(), plain, 0.0, 0.0);
  EXPECT_TENSOR_CLOSE(next, next_plain, 0.0, 0.0);
}

// Two identically initialised CLIPs, one checkpointed, one training step's gradients compared.
void expect_checkpointed_gradients_equal(const char* config_json, bool bf16_autocast) {
  const clipnet::ClipConfig config = clipnet::ClipConfig::from_json_text(config_json);
  at::manual_seed(3);
  clipnet::ClipModel plain(config);
  at::manual_seed(3);
  clipnet::ClipModel checkpointed(config);
  checkpointed->set_grad_checkpointing(true);
  const int64_t b = 4, s = config.vision.image_size, l = config.text.context_length;
  const at::Tensor images = at::randn({b, 3, s, s});                           // (B, 3, S, S)
  const at::Tensor tokens = at::randint(1, config.text.vocab_size, {b, l}, at::kLong);  // (B, L)
  const at::Tensor weights = at::randn({b, b});
  std::vector<at::Tensor> image_grads;
  for (clipnet::ClipModel* m : {&plain, &checkpointed}) {
    (*m)->train();
    at::Tensor pixels = images.clone().requires_grad_(true);
    at::Tensor logits;
    {
      if (bf16_autocast) {
        at::autocast::set_autocast_enabled(at::kCPU, true);
        at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
        at::autocast::increment_nesting();
      }
      logits = std::get<0>((*m)->forward(pixels, tokens)).to(at::kFloat);  // (B, B)
      if (bf16_autocast) {
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        at::autocast::set_autocast_enabled(at::kCPU, false);
      }
    }
    (logits * weights).sum().backward();
    image_grads.push_back(pixels.grad());
  }
  double worst = 0;
  std::string worst_name;
  const auto a = plain->named_parameters(), c = checkpointed->named_parameters();
  ASSERT_EQ(a.size(), c.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].value().grad().defined()) << a[i].key();
    ASSERT_TRUE(c[i].value().grad().defined()) << c[i].key();
    const double d = test::max_abs_diff(a[i].value().grad(), c[i].value().grad());
    if (d >= worst) worst = d, worst_name = a[i].key();
  }
  const double pixel_diff = test::max_abs_diff(image_grads[0], image_grads[1]);
  std::printf("%s%s: %zu parameter gradients, max abs diff %.3g (%s); pixel gradient diff %.3g\n",
              config.vision.is_resnet() ? "ResNet" : "ViT", bf16_autocast ? " (bf16 autocast)" : "", a.size(),
              worst, worst_name.c_str(), pixel_diff);
  EXPECT_LE(worst, 1e-6);
  EXPECT_LE(pixel_diff, 1e-6);
  // BatchNorm running statistics moved once, as without checkpointing.
  const auto ba = plain->named_buffers(), bc = checkpointed->named_buffers();
  ASSERT_EQ(ba.size(), bc.size());
  for (size_t i = 0; i < ba.size(); ++i)
    EXPECT_TRUE(ba[i].value().equal(bc[i].value())) << ba[i].key();
}

const char* kTinyVit = R"({"embed_dim": 32,
  "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
  "text_cfg": {"context_length": 12, "vocab_size": 300, "width": 32, "heads": 2, "layers": 2}})";
const char* kTinyResNet = R"({"embed_dim": 32,
  "vision_cfg": {"image_size": 32, "layers": [1, 2, 1, 1], "width": 8, "head_width": 32},
  "text_cfg": {"context_length": 12, "vocab_size": 300, "width": 32, "heads": 2, "layers": 2}})";

TEST(Checkpoint, ModelsRouteTheirBlocksThroughIt) {
  clipnet::ClipModel model(clipnet::ClipConfig::from_json_text(kTinyVit));
  const at::Tensor x = at::randn({2, 5, 32});  // (B, L, C) text tower input
  EXPECT_EQ(model->transformer->forward(x, true).grad_fn()->name().find("Checkpoint"), std::string::npos);
  model->set_grad_checkpointing(true);
  const std::string name = model->transformer->forward(x, true).grad_fn()->name();
  EXPECT_NE(name.find("Checkpoint"), std::string::npos) << name;
  EXPECT_TRUE(model->visual_vit->transformer->grad_checkpointing);
  clipnet::ClipModel resnet(clipnet::ClipConfig::from_json_text(kTinyResNet));
  resnet->set_grad_checkpointing(true);
  EXPECT_TRUE(resnet->visual_resnet->grad_checkpointing);
}

TEST(Checkpoint, VitClipGradientsEqualThePlainOnes) {
  expect_checkpointed_gradients_equal(kTinyVit, false);
  expect_checkpointed_gradients_equal(kTinyVit, true);
}

TEST(Checkpoint, ResNetClipGradientsAndBatchNormStatisticsEqualThePlainOnes) {
  expect_checkpointed_gradients_equal(kTinyResNet, false);
  expect_checkpointed_gradients_equal(kTinyResNet, true);
}

}  // namespace
}  // namespace clipguide
