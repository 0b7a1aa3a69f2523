// Tests for the diffusion samplers' guidance (guidance/sampler_guidance.h): Disco's schedule strings, the
// gradient against autograd through a small differentiable "model" (the whole loss written out by hand),
// cut sets in micro-batches against one batch, cleaning and clamping, the schedule's cut set per step, and
// the errors. Tiny random ViT CLIP and noise prompts: no fixture.
// Shapes: B images, H x W pixels.
#include "guidance/sampler_guidance.h"

#include "core/error.h"
#include "guidance/random_clip.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>

namespace clipguide::guidance {
namespace {

TEST(StepSchedule, ParsesDiscoStringsAndNumbers) {
  const auto s = StepSchedule::parse("[12]*400+[4]*600", "cut_overview");
  EXPECT_EQ(s.at(1.0), 12);   // the first step
  EXPECT_EQ(s.at(0.65), 12);  // entry 350
  EXPECT_EQ(s.at(0.55), 4);   // entry 450
  EXPECT_EQ(s.at(0.0), 4);    // the last step
  const auto alternating = StepSchedule::parse(" [1, 2] * 500 ", "cut_ic_pow");
  EXPECT_EQ(alternating.values()[0], 1);
  EXPECT_EQ(alternating.values()[1], 2);
  EXPECT_EQ(StepSchedule::parse("[5]*1000", "x").at(0.3), 5);
  EXPECT_EQ(StepSchedule::parse("0.5", "x").at(0.3), 0.5);
  EXPECT_EQ(StepSchedule::parse("[3]*999+[7]", "x").at(0.0), 7);
  for (const std::string bad : {"", "[12]*400+", "12*1000", "[a]*1000", "[]*1000", "[12]*0", "[12]*1.5", "[12]*1000x",
                                "(12)*1000", "[12]*400+4"}) {
    SCOPED_TRACE(bad);
    try {
      StepSchedule::parse(bad, "cut_overview");
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut_overview: expected a schedule such as [12]*400+[4]*600"),
                std::string::npos) << e.what();
    }
  }
  try {
    StepSchedule::parse("[12]*400+[4]*500", "cut_innercut");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut_innercut: the schedule '[12]*400+[4]*500' has 900 entries, expected 1000"),
              std::string::npos) << e.what();
  }
}

// A small differentiable stand-in for a diffusion model's x0 prediction: tanh(conv(x_t)), fixed weights.
at::Tensor model_x0(const at::Tensor& x_t) {
  torch::manual_seed(7);
  const at::Tensor w = at::randn({3, 3, 3, 3}) * 0.3, b = at::randn({3}) * 0.1;
  return at::tanh(at::conv2d(x_t, w, b, 1, 1)) * 1.2;  // can leave [-1, 1]: the range loss has work
}

std::shared_ptr<Guide> tiny_guide(const GuideOptions& options = {}) {
  auto guide = std::make_shared<Guide>(std::vector<GuideMember>{test::random_tiny_vit(0)}, options);
  guide->set_prompts({GuidePrompt::from_noise(1), GuidePrompt::from_noise(2, -0.4)});
  return guide;
}

SamplerGuidanceOptions plain_options(int64_t batches) {
  SamplerGuidanceOptions o;
  o.guide.augments = parse_augments("flip,affine");
  o.guide.seed = 5;
  o.cut_overview = 2;
  o.cut_innercut = 3;
  o.cut_ic_pow = 0.8;
  o.cutn_batches = batches;
  o.clip_guidance_scale = 50;
  o.tv_scale = 0.3;
  o.range_scale = 2;
  o.sat_scale = 1;
  o.clamp_max = 0;
  return o;
}

// The loss written out: one Guide batch of every cut set's cutouts, Disco's regularisers, autograd to x_t.
std::pair<at::Tensor, double> by_hand(const SamplerGuidanceOptions& o, const at::Tensor& x_start, int64_t step,
                                      double blend) {
  GuideOptions g = o.guide;
  g.cutouts.method = CutMethod::kDisco;
  g.cutouts.cutn = 5 * o.cutn_batches;
  g.cutouts.overview = 2 * o.cutn_batches;
  g.cutouts.cut_pow = 0.8;
  auto guide = tiny_guide(g);
  const at::Tensor x_t = x_start.clone().requires_grad_(true);
  const at::Tensor x0 = model_x0(x_t);
  const at::Tensor x_in = x0 * blend + x_t * (1 - blend);
  const at::Tensor loss = o.clip_guidance_scale * guide->loss(x_in.add(1).div(2), step) +
                          o.tv_scale * disco_tv_loss(x_in) + o.range_scale * disco_range_loss(x0) +
                          o.sat_scale * disco_saturation_loss(x_in);
  return {torch::autograd::grad({loss}, {x_t})[0], loss.item<double>()};
}

at::Tensor noisy_image() {
  torch::manual_seed(3);
  return at::randn({1, 3, 40, 48}) * 0.8;
}

TEST(SamplerGuidance, GradientIsTheLossGradientThroughTheModel) {
  const SamplerGuidanceOptions o = plain_options(1);
  SamplerGuidance sg(tiny_guide(), o);
  const at::Tensor x_t = noisy_image().requires_grad_(true);
  const auto result = sg.gradient(x_t, model_x0(x_t), 0.7, 3, /*blend=*/0.6);
  const auto [expected, loss] = by_hand(o, noisy_image(), 3, 0.6);
  EXPECT_FALSE(x_t.grad().defined()) << "x_t's .grad is left alone";
  EXPECT_EQ(result.grad.sizes(), x_t.sizes());
  EXPECT_GT(expected.abs().max().item<double>(), 0);
  EXPECT_TENSOR_CLOSE(result.grad, expected, 1e-6, 1e-4);
  EXPECT_NEAR(result.report.total, loss, 1e-4 * std::abs(loss));
  EXPECT_GT(result.report.range, 0);
  EXPECT_EQ(result.report.clip.prompts.size(), 2u);
  EXPECT_EQ(result.report.overview, 2);
  EXPECT_EQ(result.report.innercut, 3);
}

TEST(SamplerGuidance, CutSetsInMicroBatchesGiveTheOneBatchGradient) {
  const SamplerGuidanceOptions o = plain_options(3);
  SamplerGuidance sg(tiny_guide(), o);
  const at::Tensor x_t = noisy_image().requires_grad_(true);
  const auto result = sg.gradient(x_t, model_x0(x_t), 0.4, 8);
  const auto [expected, loss] = by_hand(o, noisy_image(), 8, 1.0);
  EXPECT_TENSOR_CLOSE(result.grad, expected, 1e-6, 1e-5);
  EXPECT_NEAR(result.report.total, loss, 1e-5 * std::abs(loss));
}

TEST(SamplerGuidance, NonFiniteValuesBecomeZeroAndTheRmsIsClamped) {
  SamplerGuidanceOptions o = plain_options(1);
  SamplerGuidance sg(tiny_guide(), o);
  at::Tensor x_t = noisy_image().requires_grad_(true);
  at::Tensor poison = at::ones({1, 3, 40, 48});
  poison[0][1][5][7] = std::numeric_limits<float>::quiet_NaN();
  const auto bad = sg.gradient(x_t, model_x0(x_t) * poison, 0.5, 0);
  EXPECT_TRUE(at::isfinite(bad.grad).all().item<bool>());

  const auto raw = sg.gradient(x_t, model_x0(x_t), 0.5, 0);
  ASSERT_GT(raw.report.raw_rms, 1e-6);
  o.clamp_max = raw.report.raw_rms / 4;
  sg.set_options(o);
  const auto clamped = sg.gradient(x_t, model_x0(x_t), 0.5, 0);
  EXPECT_NEAR(clamped.grad.square().mean().sqrt().item<double>(), o.clamp_max, 1e-4 * o.clamp_max);
  EXPECT_TENSOR_CLOSE(clamped.grad * 4, raw.grad, 1e-7, 1e-4);  // same direction
  o.clamp_max = raw.report.raw_rms * 4;                          // below the limit: unchanged
  sg.set_options(o);
  EXPECT_TENSOR_CLOSE(sg.gradient(x_t, model_x0(x_t), 0.5, 0).grad, raw.grad, 0, 0);
}

TEST(SamplerGuidance, TheScheduleChoosesEachStepsCutSet) {
  SamplerGuidanceOptions o;  // Disco's default schedules
  o.cutn_batches = 1;
  SamplerGuidance sg(tiny_guide(), o);
  const at::Tensor x_t = noisy_image().requires_grad_(true);
  const auto first = sg.gradient(x_t, model_x0(x_t), 1.0, 0).report;
  const auto late = sg.gradient(x_t, model_x0(x_t), 0.2, 800).report;
  EXPECT_EQ(first.overview, 12);
  EXPECT_EQ(first.innercut, 4);
  EXPECT_EQ(late.overview, 4);
  EXPECT_EQ(late.innercut, 12);
}

TEST(SamplerGuidance, BadInputsAreNamed) {
  SamplerGuidance sg(tiny_guide(), plain_options(1));
  const at::Tensor x_t = noisy_image().requires_grad_(true);
  auto message = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { sg.gradient(x_t, model_x0(x_t).narrow(2, 0, 8), 0.5, 0); }).find("x0 must have x_t's shape"),
            std::string::npos);
  EXPECT_NE(message([&] { sg.gradient(x_t, model_x0(x_t), 1.5, 0); }).find("t must be in [0, 1], got 1.5"),
            std::string::npos);
  EXPECT_NE(message([&] { sg.gradient(noisy_image(), model_x0(noisy_image()), 0.5, 0); }).find("must require grad"),
            std::string::npos);
  SamplerGuidanceOptions o = plain_options(1);
  o.init_scale = 10;
  EXPECT_NE(message([&] { SamplerGuidance(tiny_guide(), o); }).find("no init_image"), std::string::npos);
  o.init_image = at::zeros({1, 3, 8, 8});
  SamplerGuidance with_init(tiny_guide(), o);
  EXPECT_NE(message([&] { with_init.gradient(x_t, model_x0(x_t), 0.5, 0); }).find("init_image must be (1 or B, 3, H, W)"),
            std::string::npos);
  o.cutn_batches = 0;
  EXPECT_NE(message([&] { sg.set_options(o); }).find("cutn_batches must be >= 1"), std::string::npos);
}

}  // namespace
}  // namespace clipguide::guidance
