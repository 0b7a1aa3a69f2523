// Every registered generator, driven by GuideLoop and a tiny CLIP model (clip_parity fixture), lowers the
// guidance loss in a few steps; and re-initialised from an image mid-run (what clip-guide's zoom video does)
// it keeps rendering and lowering it. The loss is probed on the same cutouts (a fixed guide step) before and
// after, so the comparison is not blurred by each step's fresh cutouts. A generator registered without a
// setup here fails the test. Fixtures: vqgan (vq.ckpt + vq.yaml), torchscript_generators.
// Shapes: B images (1), H x W pixels (32 x 32).
#include "generators/generator.h"
#include "guidance/guide_loop.h"
#include "guidance/tiny_clip.h"
#include "test_util.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/flip.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <optional>

namespace clipguide::generators {
namespace {

using guidance::test::tiny_member;
using guidance::test::tiny_options;
using test::fixture_dir;

struct GeneratorSetup {
  GeneratorOptions options;  // 32 x 32, batch 1
  double learning_rate = 0;  // what makes a visible difference in `steps` steps
  int64_t steps = 0;
};

// The test setup per generator name; nothing for a name this test does not know yet.
std::optional<GeneratorSetup> setup_for(const std::string& name) {
  GeneratorOptions o;
  o.width = o.height = 32;
  o.seed = 11;
  if (name == "pixel") return GeneratorSetup{o, 0.05, 12};
  if (name == "fourier") return GeneratorSetup{o, 0.05, 12};
  if (name == "primitives") {
    o.extra = {{"count", "2"}, {"fit_steps", "20"}};
    return GeneratorSetup{o, 0.05, 12};
  }
  if (name == "vqgan") {
    o.weights = fixture_dir("vqgan") / "vq.ckpt";
    o.config = fixture_dir("vqgan") / "vq.yaml";
    return GeneratorSetup{o, 0.1, 12};
  }
  if (name == "torchscript") {
    o.weights = fixture_dir("torchscript_generators") / "decoder_scripted.pt";
    o.extra = {{"latent_shape", "1,16"}, {"output_range", "-1,1"}};
    return GeneratorSetup{o, 0.1, 12};
  }
  return std::nullopt;
}

std::shared_ptr<guidance::Guide> tiny_guide() {
  auto guide = std::make_shared<guidance::Guide>(std::vector<guidance::GuideMember>{tiny_member("hf_clip")},
                                                 tiny_options());
  guide->set_prompts(guidance::text_prompts("a red circle"));
  return guide;
}

// The loss of what the generator renders now, on the cutouts of guide steps 0..3 (fixed), averaged.
double probe(Generator& generator, guidance::Guide& guide) {
  at::NoGradGuard no_grad;
  at::Tensor image = generator.render();  // (1, 3, 32, 32)
  double sum = 0;
  for (int64_t step = 0; step < 4; ++step) sum += guide.loss(image, step).item<double>();
  return sum / 4;
}

// Each test's registered generator (GetParam()) from its setup, at the setup's seed, and the tiny guide.
class GeneratorsGuided : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    CLIPGUIDE_REQUIRE_VOCABULARY();
    name = GetParam();
    auto found = setup_for(name);
    ASSERT_TRUE(found) << "registered generator '" << name << "' has no setup in " << __FILE__ << ": add one";
    setup = *found;
    generator = GeneratorRegistry::create(name, setup.options);
    generator->init_random(setup.options.seed);
    guide = tiny_guide();
  }
  std::string name;
  GeneratorSetup setup;
  std::shared_ptr<Generator> generator;
  std::shared_ptr<guidance::Guide> guide;
};

TEST_P(GeneratorsGuided, LowersTheGuidanceLoss) {
  const double before = probe(*generator, *guide);
  guidance::GuideLoop loop(generator, guide, guidance::LoopSettings{"adam", setup.learning_rate});
  EXPECT_EQ(loop.run(setup.steps), setup.steps);
  const double after = probe(*generator, *guide);
  std::printf("%s: probe loss %.5f -> %.5f after %lld steps\n", name.c_str(), before, after,
              static_cast<long long>(setup.steps));
  EXPECT_LT(after, before) << name << " did not lower the loss";
}

// clip-guide --zoom_video: mid-run the generator is re-initialised from a (shifted) image and the optimiser
// restarts (a LoopSnapshot without optimiser state); the run goes on and lowers the loss again.
TEST_P(GeneratorsGuided, RestartsFromAnImageAndLowersTheLossAgain) {
  guidance::GuideLoop loop(generator, guide, guidance::LoopSettings{"adam", setup.learning_rate});
  loop.run(setup.steps / 2);
  at::Tensor image;
  {
    at::NoGradGuard no_grad;
    image = at::flip(generator->render(), {3});  // (1, 3, 32, 32): a different image to restart from
  }
  generator->init_from_image(image);
  guidance::LoopSnapshot fresh;
  fresh.step = loop.steps_done();
  fresh.generator = generator->state();
  fresh.settings = loop.settings();
  loop.restore(fresh);
  const double before = probe(*generator, *guide);
  EXPECT_EQ(loop.run(setup.steps), setup.steps);
  const double after = probe(*generator, *guide);
  std::printf("%s: after restart, probe loss %.5f -> %.5f\n", name.c_str(), before, after);
  EXPECT_EQ(loop.steps_done(), setup.steps / 2 + setup.steps);
  EXPECT_LT(after, before) << name << " did not lower the loss after the restart";
}

INSTANTIATE_TEST_SUITE_P(Registered, GeneratorsGuided, ::testing::ValuesIn(GeneratorRegistry::names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace clipguide::generators
