// Tests for clipnet/grad_ops: forward values and the exact backward rules of replace_grad and
// clamp_with_grad (the latter checked element by element against VQGAN+CLIP's formula).
#include "clipnet/grad_ops.h"

#include "test_util.h"

#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>

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

}  // namespace
}  // namespace clipguide
