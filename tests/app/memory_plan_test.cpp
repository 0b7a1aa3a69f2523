// The memory planner (app/memory_plan.h) and what it stands on (core/memory.h): sizes as flags write them,
// the CPU meter, the choice of plan from a fitted model, and the fit against the measured peaks of real
// steps with a small random VQGAN and a tiny random CLIP (no fixture).
// Shapes: H x W image.
#include "app/memory_plan.h"

#include "core/error.h"
#include "core/memory.h"
#include "generators/vqgan/vqgan_generator.h"
#include "guidance/random_clip.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cstdio>
#include <regex>

namespace app = clipguide::app;
namespace gen = clipguide::generators;
namespace gd = clipguide::guidance;

namespace {

TEST(MemorySizes, ParseLikeTheFlagsWriteThem) {
  EXPECT_EQ(clipguide::parse_bytes("6G", "--max_memory"), int64_t{6} << 30);
  EXPECT_EQ(clipguide::parse_bytes("1.5GiB", "--max_memory"), int64_t{3} << 29);
  EXPECT_EQ(clipguide::parse_bytes("512m", "--max_memory"), int64_t{512} << 20);
  EXPECT_EQ(clipguide::parse_bytes("800KB", "--max_memory"), int64_t{800} << 10);
  EXPECT_EQ(clipguide::parse_bytes("1000", "--max_memory"), 1000);
  for (const std::string bad : {"", "G", "6X", "-1G", "0", "nan", "6 G", "1e400"}) {
    SCOPED_TRACE(bad);
    try {
      clipguide::parse_bytes(bad, "--max_memory");
      ADD_FAILURE() << "no error";
    } catch (const clipguide::Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("--max_memory: expected a size such as 6G"), std::string::npos) << message;
    }
  }
  EXPECT_EQ(clipguide::format_bytes(int64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(clipguide::format_bytes(int64_t{300} << 20), "300 MiB");
  EXPECT_THROW(app::memory_budget("lots", c10::kCPU), clipguide::Error);
  EXPECT_GT(app::memory_budget("auto", c10::kCPU), clipguide::resident_bytes());
}

TEST(MemoryMeter, CountsTheCpuTensorsAllocatedAndTheirPeak) {
  clipguide::MemoryMeter meter(c10::kCPU);
  const int64_t before = meter.current();
  meter.reset_peak();
  {
    at::Tensor a = at::empty({1 << 20});  // 4 MiB
    at::Tensor b = at::empty({1 << 19});  // 2 MiB
    EXPECT_GE(meter.current() - before, int64_t{6} << 20);
  }
  EXPECT_EQ(meter.current(), before);
  EXPECT_GE(meter.peak() - before, int64_t{6} << 20);
  EXPECT_LT(meter.peak() - before, int64_t{7} << 20);
  meter.reset_peak();
  EXPECT_EQ(meter.peak(), meter.current());
}

// A hand-made model: 1000 bytes fixed; the generator holds (and peaks at) 10 bytes per pixel without
// checkpointing; with it, holds 2 and peaks at 3; CLIP takes 100 bytes per cutout.
app::MemoryModel hand_model(bool checkpoint_helps = true) {
  app::MemoryModel m;
  m.fixed = 1000;
  m.held[0].b = m.peak[0].b = 10;
  m.held[1].b = 2;
  m.peak[1].b = 3;
  m.c = 100;
  m.checkpoint_helps = checkpoint_helps;
  return m;
}

TEST(MemoryPlan, PredictionsAreTheLargerOfBothPhases) {
  const app::MemoryModel m = hand_model();
  EXPECT_EQ(m.predict(false, 100, 4), 1000 + static_cast<int64_t>(1.1 * (1000 + 400)));
  EXPECT_EQ(m.predict(true, 100, 4), 1000 + static_cast<int64_t>(1.1 * (200 + 400)));  // CLIP on what is held
  EXPECT_EQ(m.predict(true, 1000, 1), 1000 + static_cast<int64_t>(1.1 * 3000));      // the recomputing backward
  const double px = m.pixels_within(m.predict(true, 1000, 1), true, 1);
  EXPECT_NEAR(px, 1000, 1);
}

TEST(MemoryPlan, TheFastestPlanThatFitsIsChosen) {
  const app::MemoryModel m = hand_model();
  // 10x10 image, 16 cutouts: steps of 1000 + 1600 / batches (no checkpointing) or 200 + 1600 / batches.
  auto plan = [&](int64_t budget) { return app::choose_plan(m, 10, 10, 1, 16, 1, budget); };
  EXPECT_EQ(plan(1 << 20).cutn_batches, 1);
  EXPECT_FALSE(plan(1 << 20).checkpoint);
  EXPECT_EQ(plan(m.predict(false, 100, 8)).cutn_batches, 2);
  EXPECT_FALSE(plan(m.predict(false, 100, 8)).checkpoint);
  EXPECT_EQ(plan(m.predict(false, 100, 1)).cutn_batches, 16);
  // Below what micro-batches alone reach: checkpointing, with as few micro-batches as fit.
  const auto p = plan(m.predict(true, 100, 4));
  EXPECT_TRUE(p.checkpoint);
  EXPECT_EQ(p.cutn_batches, 4);
  EXPECT_LE(p.predicted, p.budget);
  // A generator without a network: checkpointing is never part of a plan.
  EXPECT_THROW(app::choose_plan(hand_model(false), 10, 10, 1, 16, 1, m.predict(true, 100, 4)), clipguide::Error);
}

TEST(MemoryPlan, NothingFitsNamesTheLeanestNeedAndASizeThatFits) {
  const app::MemoryModel m = hand_model();
  const int64_t budget = m.predict(true, 40 * 40, 1);  // the leanest plan at 40x40, at 64x32 it is too much
  try {
    app::choose_plan(m, 64, 32, 1, 16, 4, budget);
    ADD_FAILURE() << "no error";
  } catch (const clipguide::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("--max_memory"), std::string::npos) << message;
    EXPECT_NE(message.find("the leanest plan (cutn_batches 16, checkpointing)"), std::string::npos) << message;
    std::smatch size;
    ASSERT_TRUE(std::regex_search(message, size, std::regex(R"((\d+)x(\d+) would fit)"))) << message;
    const int64_t w = std::stoll(size[1]), h = std::stoll(size[2]);
    EXPECT_EQ(w % 4, 0);
    EXPECT_EQ(h % 4, 0);
    EXPECT_EQ(w, 2 * h) << "the aspect is kept";
    EXPECT_LE(m.predict(true, w * h, 1), budget);                    // it fits
    EXPECT_GT(m.predict(true, (w + 4) * (h + 4), 1), budget * 0.95);  // and is about the largest that does
  }
  try {
    app::choose_plan(m, 64, 32, 1, 16, 4, 1100);  // the models alone nearly fill it
    ADD_FAILURE() << "no error";
  } catch (const clipguide::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no size fits"), std::string::npos) << e.what();
  }
}

gen::vqgan::VQModel small_vqgan() {  // f = 4, 32 to 64 channels: big enough for its activations to show
  gen::vqgan::VqganConfig c;
  c.ch = 32;
  c.ch_mult = {1, 2, 2};
  c.num_res_blocks = 1;
  c.encoder_attn = {false, false, true};
  c.decoder_attn = {false, false, true};
  c.z_channels = 32;
  c.n_embed = 16;
  c.embed_dim = 8;
  torch::manual_seed(0);
  gen::vqgan::VQModel m(c);
  m->eval();
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

// The fit against real steps: at a size and cutout count the probes never saw, every plan's measured peak
// (tensor bytes above those before the step) is within the prediction and at least 60% of it;
// checkpointing is found to help the VQGAN.
TEST(MemoryPlan, ProbedModelPredictsTheMeasuredPeaksOfRealSteps) {
  at::set_num_threads(1);
  gen::GeneratorOptions options;
  options.width = 192;
  options.height = 128;
  options.seed = 1;
  gen::vqgan::VqganGenerator generator(small_vqgan(), options);
  std::vector<gd::GuideMember> members{gd::test::random_tiny_vit(0)};
  gd::GuideOptions guide_options;
  guide_options.augments = gd::parse_augments("flip,affine");
  const app::MemoryModel model = app::probe_memory(generator, options, members, guide_options, c10::kCPU);
  EXPECT_TRUE(model.checkpoint_helps);
  std::printf("fitted, B/pixel: generator held %.0f, peak %.0f; checkpointed held %.0f, peak %.0f; CLIP %.0f B + %.0f "
              "B/cutout\n",
              model.held[0].b, model.peak[0].b, model.held[1].b, model.peak[1].b, model.c0, model.c);

  clipguide::MemoryMeter meter(c10::kCPU);
  const int64_t cutn = 24;
  for (bool checkpoint : {false, true}) {
    for (int64_t batches : {1, 4}) {
      gen::GeneratorOptions o = options;
      o.checkpoint = checkpoint;
      auto g = generator.rebuilt(o);
      gd::GuideOptions go = guide_options;
      go.cutouts.cutn = cutn;
      go.cutn_batches = batches;
      gd::Guide guide(members, go);
      guide.set_prompts({gd::GuidePrompt::from_noise(3)});
      const int64_t before = meter.current();
      meter.reset_peak();
      guide.backward(g->render(), 0);
      const double measured = static_cast<double>(meter.peak() - before);
      const double predicted =  // tensor bytes: without the CPU's resident-size slack
          static_cast<double>(model.predict(checkpoint, 192 * 128, (cutn + batches - 1) / batches) - model.fixed) / model.slack;
      std::printf("checkpoint %d, cutn_batches %lld: measured %.2f MiB, predicted %.2f MiB (with the 10%% margin)\n",
                  checkpoint, static_cast<long long>(batches), measured / (1 << 20), predicted / (1 << 20));
      EXPECT_LE(measured, predicted) << "checkpoint " << checkpoint << ", cutn_batches " << batches;
      EXPECT_GE(measured, 0.6 * predicted) << "checkpoint " << checkpoint << ", cutn_batches " << batches;
    }
  }
}

// A generator that cannot be rebuilt at other sizes is named, with what to do instead.
TEST(MemoryPlan, AGeneratorThatCannotBeProbedIsNamed) {
  struct Fixed : gen::Generator {
    at::Tensor p = at::zeros({1, 3, 8, 8}).requires_grad_(true);
    std::string name() const override { return "fixed-size"; }
    std::vector<at::Tensor> parameters() override { return {p}; }
    at::Tensor render() override { return p.sigmoid(); }
    void init_from_image(const at::Tensor&) override {}
    void init_random(uint64_t) override {}
    std::vector<int64_t> latent_shape() const override { return {1, 3, 8, 8}; }
    gen::TensorMap state() const override { return {{"p", p}}; }
    void load_state(const gen::TensorMap&) override {}
  } fixed;
  try {
    app::probe_memory(fixed, {}, {gd::test::random_tiny_vit(0)}, {}, c10::kCPU);
    ADD_FAILURE() << "no error";
  } catch (const clipguide::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("--max_memory: the fixed-size generator cannot be rebuilt"), std::string::npos) << message;
    EXPECT_NE(message.find("--cutn_batches"), std::string::npos) << message;
  }
}

}  // namespace
