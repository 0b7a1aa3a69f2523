// Tests for GuideOptions' speed settings: on the CPU, a bf16-autocast guide loss and its image gradient stay
// close to fp32 (same cutouts, fp32 weights) with the report and float loss unchanged; cuda_graphs is
// ignored for CPU members. A tiny random ViT CLIP and in-memory image prompts: no fixture or vocabulary.
// Shapes: B images, H x W pixels.
#include "guidance/guide.h"

#include "guidance/random_clip.h"
#include "test_util.h"

#include <ATen/Parallel.h>
#include <ATen/ops/cosine_similarity.h>
#include <ATen/ops/rand.h>
#include <gtest/gtest.h>

#include <cmath>

namespace clipguide::guidance {
namespace {

TEST(GuideSpeedOptions, Bf16AutocastLossAndGradientCloseToFp32OnCpu) {
  at::set_num_threads(1);
  GuideOptions options;
  options.cutouts.cutn = 8;
  options.augments = parse_augments("none");
  options.seed = 7;
  Guide guide({test::random_tiny_vit()}, options);
  torch::manual_seed(1);
  guide.set_prompts({GuidePrompt::from_image(at::rand({3, 32, 32})), GuidePrompt::from_image(at::rand({3, 32, 32}), -0.5)});
  const at::Tensor base = at::rand({1, 3, 48, 48});  // (B, 3, H, W) in [0, 1]

  auto run = [&](at::ScalarType autocast, at::Tensor* grad) {
    GuideOptions o = options;
    o.autocast = autocast;
    guide.set_options(o);
    at::Tensor image = base.clone().requires_grad_(true);
    GuideReport report;
    at::Tensor loss = guide.loss(image, /*step=*/3, &report);
    EXPECT_EQ(loss.scalar_type(), at::kFloat);
    EXPECT_EQ(report.prompts.size(), 2u);
    loss.backward();
    *grad = image.grad().clone();
    return loss.item<double>();
  };
  at::Tensor g32, g16;
  const double l32 = run(at::kFloat, &g32), l16 = run(at::kBFloat16, &g16);
  const double cos = at::cosine_similarity(g32.flatten(), g16.flatten(), 0).item<double>();
  std::printf("loss fp32 %.6f, bf16 autocast %.6f (diff %.2e); gradient cosine %.5f, max abs diff %.2e of max %.2e\n",
              l32, l16, std::abs(l32 - l16), cos, clipguide::test::max_abs_diff(g32, g16), g32.abs().max().item<double>());
  EXPECT_NEAR(l16, l32, 1e-2 * std::abs(l32) + 1e-3);
  EXPECT_GT(cos, 0.98);
  EXPECT_NE(l16, l32);  // autocast really ran in bf16
}

TEST(GuideSpeedOptions, CudaGraphsAreIgnoredForCpuMembers) {
  at::set_num_threads(1);
  GuideOptions options;
  options.cutouts.cutn = 4;
  options.augments = parse_augments("none");
  Guide guide({test::random_tiny_vit()}, options);
  torch::manual_seed(1);
  guide.set_prompts({GuidePrompt::from_image(at::rand({3, 32, 32}))});
  const at::Tensor image = at::rand({1, 3, 40, 40});
  const double eager = guide.loss(image, 0).item<double>();
  options.cuda_graphs = true;
  guide.set_options(options);
  EXPECT_EQ(guide.loss(image, 0).item<double>(), eager);
}

}  // namespace
}  // namespace clipguide::guidance
