// Tests for guidance/loss: distances against closed forms, the stop threshold's straight-through gradient,
// and finite-difference gradient checks of the spherical prompt loss and the regularisers.
#include "guidance/loss.h"

#include "core/error.h"
#include "test_util.h"

#include <ATen/ops/full.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>

#include <cmath>
#include <functional>

namespace clipguide::guidance {
namespace {

// Central differences of f at a few coordinates of x, against autograd.
void expect_gradient_matches(const std::function<at::Tensor(const at::Tensor&)>& f, at::Tensor x, double tol) {
  x = x.detach().to(at::kDouble).requires_grad_(true);
  f(x).backward();
  at::Tensor grad = x.grad().flatten();
  const double eps = 1e-6;
  for (int64_t i = 0; i < x.numel(); i += std::max<int64_t>(1, x.numel() / 17)) {
    at::Tensor xp = x.detach().clone().flatten(), xm = xp.clone();
    xp[i] += eps;
    xm[i] -= eps;
    double numeric = (f(xp.view_as(x)).item<double>() - f(xm.view_as(x)).item<double>()) / (2 * eps);
    EXPECT_NEAR(grad[i].item<double>(), numeric, tol) << "coordinate " << i;
  }
}

TEST(EmbeddingDistance, SphericalMatchesClosedForm) {
  // Unit vectors at angle theta: |a - b| = 2 sin(theta / 2), so the distance is 2 (theta / 2)^2 = theta^2 / 2.
  for (double theta : {0.1, 1.0, 2.5}) {
    auto a = at::tensor({1.0, 0.0}, at::kDouble).view({1, 2});
    auto b = at::tensor({std::cos(theta), std::sin(theta)}, at::kDouble).view({1, 2}) * 3.0;  // length ignored
    EXPECT_NEAR(embedding_distance(a, b).item<double>(), theta * theta / 2, 1e-12);
    EXPECT_NEAR(embedding_distance(a, b, Distance::kCosine).item<double>(), 1 - std::cos(theta), 1e-12);
  }
  auto d = embedding_distance(at::randn({5, 8}), at::randn({3, 8}));
  EXPECT_EQ(shape_str(d.sizes()), "[5, 3]");
}

TEST(PromptLoss, GradientMatchesFiniteDifferences) {
  Target t{at::randn({16}, at::kDouble), 1.7};
  expect_gradient_matches([&](const at::Tensor& x) { return prompt_loss(x, t); }, at::randn({6, 16}), 1e-6);
  Target negative{at::randn({16}, at::kDouble), -0.6};
  expect_gradient_matches([&](const at::Tensor& x) { return prompt_loss(x, negative); }, at::randn({6, 16}), 1e-6);
  expect_gradient_matches([&](const at::Tensor& x) { return prompt_loss(x, t, Distance::kCosine); },
                          at::randn({4, 16}), 1e-6);
}

TEST(PromptLoss, WeightSignAndStop) {
  auto x = at::randn({8, 4}, at::kDouble);
  auto e = at::randn({4}, at::kDouble);
  auto d = embedding_distance(x, e.unsqueeze(0));
  EXPECT_NEAR(prompt_loss(x, {e, 2.0}).item<double>(), 2 * d.mean().item<double>(), 1e-12);
  EXPECT_NEAR(prompt_loss(x, {e, -0.5}).item<double>(), -0.5 * d.mean().item<double>(), 1e-12);

  // A stop between the distances: forward value unchanged, gradient zero for the cutouts below it.
  double stop = d.median().item<double>();
  auto xg = x.clone().requires_grad_(true);
  auto loss = prompt_loss(xg, {e, 1.0, stop});
  EXPECT_NEAR(loss.item<double>(), d.mean().item<double>(), 1e-12);
  loss.backward();
  auto row_grad = xg.grad().abs().sum(1);
  for (int64_t i = 0; i < 8; ++i) {
    double di = d[i][0].item<double>();
    if (di < stop) {
      EXPECT_EQ(row_grad[i].item<double>(), 0.0) << "cutout " << i << " below the stop";
    } else if (di > stop) {
      EXPECT_GT(row_grad[i].item<double>(), 0.0) << "cutout " << i << " above the stop";
    }
  }
}

TEST(Regularisers, ValuesAndGradients) {
  auto flat = at::full({1, 3, 5, 5}, 0.3, at::kDouble);
  EXPECT_EQ(total_variation(flat).item<double>(), 0.0);
  EXPECT_EQ(saturation_loss(flat).item<double>(), 0.0);
  EXPECT_EQ(symmetry_loss(flat).item<double>(), 0.0);
  auto img = at::rand({2, 3, 6, 7}, at::kDouble);
  EXPECT_GT(total_variation(img).item<double>(), 0.0);
  expect_gradient_matches([](const at::Tensor& x) { return total_variation(x); }, img, 1e-6);
  expect_gradient_matches([](const at::Tensor& x) { return symmetry_loss(x); }, img, 1e-6);
  auto init = at::rand({1, 3, 6, 7}, at::kDouble);
  EXPECT_NEAR(init_image_loss(img, init, 0).item<double>(), (img - init).pow(2).mean().item<double>() / 2, 1e-12);
  EXPECT_NEAR(init_image_loss(img, init, 2).item<double>(), (img - init).pow(2).mean().item<double>() / 10, 1e-12);
  EXPECT_THROW(total_variation(at::rand({3, 4, 4})), std::exception);
}

}  // namespace
}  // namespace clipguide::guidance
