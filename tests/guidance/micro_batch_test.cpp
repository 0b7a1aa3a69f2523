// Tests for cutout micro-batches (GuideOptions::cutn_batches, Guide::backward): the same loss, report and
// image gradient as one batch (1e-5), with every augmentation on, two members of different input sizes,
// a masked prompt, regularisers and a batch of two images; and a plan's slices are its cutouts.
// Tiny random ViT CLIPs and in-memory image prompts: no fixture or vocabulary.
// Shapes: B images, H x W pixels.
#include "guidance/guide.h"

#include "guidance/random_clip.h"
#include "test_util.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

namespace clipguide::guidance {
namespace {

GuideOptions busy_options() {
  GuideOptions options;
  options.cutouts.cutn = 7;  // not a multiple of the micro-batch count
  options.augments = parse_augments("flip,affine,perspective,jitter,sharpness,gaussian,erasing,noise");
  options.tv_weight = 0.1;
  options.saturation_weight = 0.05;
  options.seed = 11;
  return options;
}

// A 32 px member and a 48 px one of weight 0.5.
std::vector<GuideMember> two_members() {
  GuideMember large = test::random_tiny_vit(1);
  clipnet::ClipConfig c = large.config;
  c.vision.image_size = 48;
  torch::manual_seed(1);
  large.model = clipnet::ClipModel(c);
  large.model->eval();
  for (auto& p : large.model->parameters()) p.set_requires_grad(false);
  large.config = c;
  large.weight = 0.5;
  return {test::random_tiny_vit(0), large};
}

TEST(CutoutMicroBatches, SameLossReportAndGradientAsOneBatch) {
  auto gen = at::detail::createCPUGenerator(3);
  const at::Tensor image = at::rand({2, 3, 40, 56}, gen);  // (B, 3, H, W)
  at::Tensor mask = at::zeros({40, 56});
  mask.narrow(1, 0, 30).fill_(1);
  std::vector<GuidePrompt> prompts = {GuidePrompt::from_image(at::rand({3, 32, 32}, gen)),
                                      GuidePrompt::from_image(at::rand({3, 32, 32}, gen), -0.5)};
  prompts[1].mask = mask;
  at::Tensor reference_grad;
  GuideReport reference;
  for (int64_t batches : {1, 2, 3, 14}) {
    SCOPED_TRACE("cutn_batches " + std::to_string(batches));
    GuideOptions options = busy_options();
    options.cutn_batches = batches;
    Guide guide(two_members(), options);
    guide.set_prompts(prompts);
    at::Tensor x = image.clone().requires_grad_(true);
    GuideReport report;
    const at::Tensor loss = guide.backward(x * 1.0, 4, &report);  // through an op: the image's own graph
    EXPECT_FALSE(loss.requires_grad());
    ASSERT_TRUE(x.grad().defined());
    if (batches == 1) {
      reference_grad = x.grad().clone();
      reference = report;
      EXPECT_NEAR(report.total, guide.loss(image, 4).item<double>(), 1e-6);
      continue;
    }
    EXPECT_NEAR(loss.item<double>(), reference.total, 1e-5);
    EXPECT_NEAR(report.tv, reference.tv, 1e-7);
    ASSERT_EQ(report.prompts.size(), 2u);
    for (size_t p = 0; p < 2; ++p) {
      EXPECT_NEAR(report.prompts[p].loss, reference.prompts[p].loss, 1e-5);
      EXPECT_NEAR(report.prompts[p].similarity, reference.prompts[p].similarity, 1e-5);
    }
    EXPECT_TENSOR_CLOSE(x.grad(), reference_grad, 1e-5, 0);
  }
  EXPECT_GT(reference_grad.abs().max().item<double>(), 1e-4) << "the gradient is not trivially zero";
}

// Several processes on one image: shard k of n scores its part of the step's cutouts (and part 0 the
// regularisers); the parts' losses, reports and gradients summed are the one-process ones, also with
// micro-batches inside a part and with more parts than cutouts.
TEST(CutoutShards, PartsSumToTheWholeLossReportAndGradient) {
  auto gen = at::detail::createCPUGenerator(4);
  const at::Tensor image = at::rand({1, 3, 40, 48}, gen);
  std::vector<GuidePrompt> prompts = {GuidePrompt::from_image(at::rand({3, 32, 32}, gen)),
                                      GuidePrompt::from_image(at::rand({3, 32, 32}, gen), -0.5)};
  auto run = [&](int64_t shard, int64_t shards, int64_t batches, GuideReport* report) {
    GuideOptions options = busy_options();
    options.shard = shard, options.shards = shards, options.cutn_batches = batches;
    Guide guide(two_members(), options);
    guide.set_prompts(prompts);
    at::Tensor x = image.clone().requires_grad_(true);
    guide.backward(x * 1.0, 3, report);
    return x.grad().defined() ? x.grad().clone() : at::zeros_like(image);
  };
  GuideReport whole;
  const at::Tensor whole_grad = run(0, 1, 1, &whole);
  for (const auto& [shards, batches] : std::vector<std::pair<int64_t, int64_t>>{{2, 1}, {3, 2}, {20, 1}}) {
    SCOPED_TRACE(std::to_string(shards) + " parts, " + std::to_string(batches) + " micro-batches");
    at::Tensor grad = at::zeros_like(image);
    double total = 0, tv = 0, loss0 = 0, similarity1 = 0;
    for (int64_t k = 0; k < shards; ++k) {
      GuideReport part;
      grad += run(k, shards, batches, &part);
      total += part.total, tv += part.tv, loss0 += part.prompts[0].loss, similarity1 += part.prompts[1].similarity;
    }
    EXPECT_NEAR(total, whole.total, 1e-5);
    EXPECT_NEAR(tv, whole.tv, 1e-7);
    EXPECT_NEAR(loss0, whole.prompts[0].loss, 1e-5);
    EXPECT_NEAR(similarity1, whole.prompts[1].similarity, 1e-5);
    EXPECT_TENSOR_CLOSE(grad, whole_grad, 1e-5, 0);
  }
  GuideOptions bad = busy_options();
  bad.shard = 2, bad.shards = 2;
  Guide guide(two_members(), bad);
  guide.set_prompts(prompts);
  EXPECT_THROW(guide.loss(image, 0), Error);
}

TEST(CutoutMicroBatches, PlanSlicesAreItsCutouts) {
  auto gen = at::detail::createCPUGenerator(5);
  const at::Tensor image = at::rand({2, 3, 30, 44}, gen);
  CutoutOptions cut;
  cut.cutn = 5;
  for (const auto method : {CutMethod::kRandom, CutMethod::kDisco, CutMethod::kLatest}) {
    cut.method = method;
    Cutouts cutouts(cut, busy_options().augments, 9);
    const at::Tensor whole = cutouts(image, 16);  // (10, 3, 16, 16)
    cutouts.reseed(9);
    const CutoutPlan plan = cutouts.plan(image, 16);
    EXPECT_EQ(plan.count, 10);
    const at::Tensor pieces = at::cat({cutouts.sample(image, plan, 0, 3), cutouts.sample(image, plan, 3, 6),
                                       cutouts.sample(image, plan, 9, 1)});
    EXPECT_TENSOR_CLOSE(pieces, whole, 1e-6, 0);
    EXPECT_THROW(cutouts.sample(image, plan, 8, 3), c10::Error);
    EXPECT_THROW(cutouts.sample(image.narrow(0, 0, 1), plan, 0, 2), c10::Error);
  }
}

TEST(CutoutMicroBatches, BadCountIsAClearError) {
  GuideOptions options = busy_options();
  options.cutn_batches = 0;
  Guide guide({test::random_tiny_vit()}, options);
  guide.set_prompts({GuidePrompt::from_image(at::rand({3, 32, 32}))});
  EXPECT_NE(clipguide::test::error_of([&] { guide.loss(at::rand({1, 3, 32, 32}), 0); }).find("cutn_batches must be >= 1"),
            std::string::npos);
}

}  // namespace
}  // namespace clipguide::guidance
