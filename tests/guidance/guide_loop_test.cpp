// Tests for guidance/guide_loop: the "pixel" generator guided by a tiny CLIP model lowers the loss, pause and
// stop work from another thread, a restored snapshot repeats the same steps, settings changed between
// steps apply at the next one, parameter hooks reach the optimiser, and a frozen region stays exactly as it
// was (Adam, pixel and Fourier generators) until it is unfrozen; a non-finite loss stops the loop before
// the optimiser steps on it.
// Shapes: B images, H x W pixels.
#include "guidance/guide_loop.h"
#include "guidance/optimizers.h"

#include "core/error.h"
#include "generators/generator.h"
#include "guidance/tiny_clip.h"
#include "test_util.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <thread>
#include <vector>

namespace clipguide::guidance {
namespace {

using test::tiny_member;
using test::tiny_options;

std::shared_ptr<generators::Generator> make_generator(const std::string& name, int64_t size = 32, uint64_t seed = 3) {
  generators::GeneratorOptions options;
  options.width = options.height = size;
  options.seed = seed;
  return generators::GeneratorRegistry::create(name, options);
}

std::shared_ptr<generators::Generator> pixel_generator(int64_t size = 32, uint64_t seed = 3) {
  return make_generator("pixel", size, seed);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

std::shared_ptr<Guide> tiny_guide(const std::string& prompts = "a red circle") {
  auto guide = std::make_shared<Guide>(std::vector<GuideMember>{tiny_member("hf_clip")}, tiny_options());
  guide->set_prompts(text_prompts(prompts));
  return guide;
}

TEST(GuideLoop, PixelGeneratorLowersTheLoss) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideLoop loop(pixel_generator(), tiny_guide(), LoopSettings{"adam", 0.1});
  std::vector<double> losses;
  std::vector<int64_t> reported_steps;
  const int64_t done = loop.run(
      20, [&](const LoopProgress& p) { reported_steps.push_back(p.step); }, 5);
  EXPECT_EQ(done, 20);
  EXPECT_EQ(loop.steps_done(), 20);
  EXPECT_EQ(reported_steps, (std::vector<int64_t>{5, 10, 15, 20}));
  // The run above and a second one, step by step, for the figures.
  GuideLoop again(pixel_generator(), tiny_guide(), LoopSettings{"adam", 0.1});
  for (int i = 0; i < 20; ++i) losses.push_back(again.step().total);
  const double first = (losses[0] + losses[1] + losses[2]) / 3, last = (losses[17] + losses[18] + losses[19]) / 3;
  std::printf("loss: first 3 steps %.5f, last 3 steps %.5f (step 0 %.5f, step 19 %.5f)\n", first, last, losses[0],
              losses[19]);
  EXPECT_LT(last, first);
  at::Tensor image = again.last_image();
  EXPECT_EQ(shape_str(image.sizes()), "[1, 3, 32, 32]");
  EXPECT_FALSE(image.requires_grad());
}

// A pixel generator whose render turns NaN from a given step on (a divergent model, a NaN input).
class NanFromStep : public generators::Generator {
 public:
  NanFromStep(std::shared_ptr<generators::Generator> inner, int64_t from) : inner_(std::move(inner)), from_(from) {}
  std::string name() const override { return "nan-from-step"; }
  std::vector<at::Tensor> parameters() override { return inner_->parameters(); }
  at::Tensor render() override {
    at::Tensor image = inner_->render();
    return renders_++ >= from_ ? image * std::nan("") : image;
  }
  void init_random(uint64_t seed) override { inner_->init_random(seed); }
  void init_from_image(const at::Tensor& image) override { inner_->init_from_image(image); }
  generators::TensorMap state() const override { return inner_->state(); }
  void load_state(const generators::TensorMap& state) override { inner_->load_state(state); }
  std::vector<int64_t> latent_shape() const override { return inner_->latent_shape(); }

 private:
  std::shared_ptr<generators::Generator> inner_;
  int64_t from_;
  int64_t renders_ = 0;
};

TEST(GuideLoop, NonFiniteLossStopsBeforeTheOptimiserSteps) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  auto generator = std::make_shared<NanFromStep>(pixel_generator(), 3);
  GuideLoop loop(generator, tiny_guide(), LoopSettings{"adam", 0.1});
  int64_t callbacks = 0;
  try {
    loop.run(10, [&](const LoopProgress&) { ++callbacks; });
    FAIL() << "expected NonFiniteLoss";
  } catch (const NonFiniteLoss& e) {
    EXPECT_EQ(e.step, 4);
    EXPECT_NE(std::string(e.what()).find("NaN at step 4"), std::string::npos) << e.what();
  }
  EXPECT_EQ(callbacks, 3);
  EXPECT_EQ(loop.steps_done(), 3);
  ASSERT_TRUE(loop.last_image().defined());
  EXPECT_TRUE(loop.last_image().isfinite().all().item<bool>());  // step 3's image, finite
  for (const auto& p : generator->parameters()) EXPECT_TRUE(p.isfinite().all().item<bool>());
}

TEST(GuideLoop, EveryOptimizerRunsAndUnknownNamesAreErrors) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  auto guide = tiny_guide();
  for (const auto& name : optimizer_names()) {
    GuideLoop loop(pixel_generator(16), guide, LoopSettings{name, 0.05, 0.0, 0.5});
    EXPECT_TRUE(std::isfinite(loop.step().total)) << name;
  }
  EXPECT_THROW(GuideLoop(pixel_generator(16), guide, LoopSettings{"lbfgs"}), Error);
  EXPECT_THROW(GuideLoop(pixel_generator(16), guide, LoopSettings{"adam", -1.0}), Error);
  EXPECT_THROW(GuideLoop(nullptr, guide), Error);
}

TEST(GuideLoop, PauseAndStopFromAnotherThread) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideLoop loop(pixel_generator(16), tiny_guide());
  std::atomic<int64_t> seen{0};
  int64_t done = 0;
  std::thread runner([&] { done = loop.run(100000, [&](const LoopProgress& p) { seen.store(p.step); }); });
  auto wait_for = [&](int64_t steps) {
    for (int i = 0; i < 6000 && seen.load() < steps; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  };
  wait_for(2);
  loop.pause();
  EXPECT_TRUE(loop.paused());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // lets a step in flight finish
  const int64_t at_pause = loop.steps_done();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(loop.steps_done(), at_pause);  // paused: no progress
  loop.resume();
  wait_for(at_pause + 2);
  EXPECT_GE(loop.steps_done(), at_pause + 2);
  loop.pause();
  loop.request_stop();  // releases the paused run
  runner.join();
  EXPECT_EQ(done, loop.steps_done());
  EXPECT_LT(done, 100000);
  std::printf("stopped after %lld steps\n", static_cast<long long>(done));
}

TEST(GuideLoop, PostedTasksRunInOrderOnTheSteppingThreadBeforeTheNextStep) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideLoop loop(pixel_generator(16), tiny_guide());
  std::vector<std::string> ran;
  int woken = 0;
  loop.set_post_listener([&] { ++woken; });
  loop.post([&](GuideLoop& l) { ran.push_back("a@" + std::to_string(l.steps_done())); });
  loop.update_settings(LoopSettings{"sgd", 0.5});  // a task like any other, after "a"
  loop.post([&](GuideLoop& l) { ran.push_back("b:" + l.settings().optimizer); });
  EXPECT_EQ(woken, 3);
  EXPECT_TRUE(loop.has_posted());
  EXPECT_TRUE(ran.empty());  // nothing runs on the posting thread
  loop.step();
  EXPECT_EQ(ran, (std::vector<std::string>{"a@0", "b:sgd"}));
  EXPECT_FALSE(loop.has_posted());

  // A task that throws: with a handler the next one still runs; without, run_posted stops there and keeps the rest.
  loop.post([](GuideLoop&) { throw Error("bad edit"); });
  loop.post([&](GuideLoop&) { ran.push_back("c"); });
  std::vector<std::string> errors;
  EXPECT_EQ(loop.run_posted([&](const std::exception& e) { errors.push_back(e.what()); }), 2u);
  EXPECT_EQ(errors, std::vector<std::string>{"bad edit"});
  EXPECT_EQ(ran.back(), "c");
  loop.post([](GuideLoop&) { throw Error("bad edit"); });
  loop.post([&](GuideLoop&) { ran.push_back("d"); });
  EXPECT_THROW(loop.step(), Error);  // before stepping: the step did not happen
  EXPECT_EQ(loop.steps_done(), 1);
  EXPECT_TRUE(loop.has_posted());
  loop.step();
  EXPECT_EQ(ran.back(), "d");
  EXPECT_EQ(loop.steps_done(), 2);
}

TEST(GuideLoop, PromptsEditedFromAnotherThreadWhileRunning) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideLoop loop(pixel_generator(16), tiny_guide("a cat|a dog"));
  std::atomic<bool> finished{false};
  int64_t done = 0;
  std::thread runner([&] {
    done = loop.run(40);
    finished.store(true);
  });
  Guide& guide = loop.guide();
  int edits = 0;
  for (; !finished.load() || edits < 5; ++edits) {  // the GUI steering: every kind of change, in a loop
    guide.add_prompt(GuidePrompt::from_text("a bird", -0.5));
    guide.set_prompt_weight(0, 0.5 + edits % 3);
    guide.edit_prompt(1, GuidePrompt::from_text(edits % 2 ? "a fish" : "a dog"));
    guide.remove_prompt(guide.prompts().size() - 1);
    if (edits % 4 == 0) guide.set_prompts(text_prompts("a cat|a dog"));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  runner.join();
  EXPECT_EQ(done, 40);
  EXPECT_EQ(guide.prompts().size(), 2u);
  EXPECT_TRUE(std::isfinite(loop.last_report().total));
  std::printf("%d prompt edits during 40 steps\n", edits);
}

TEST(GuideLoop, RestoredSnapshotRepeatsTheSameSteps) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideLoop loop(pixel_generator(), tiny_guide("a cat|a dog:-0.3"), LoopSettings{"adam", 0.05});
  for (int i = 0; i < 3; ++i) loop.step();  // Adam has moments now: the snapshot must carry them
  LoopSnapshot snap = loop.snapshot();
  EXPECT_EQ(snap.step, 3);
  std::vector<double> first, second;
  for (int i = 0; i < 3; ++i) first.push_back(loop.step().total);
  at::Tensor first_state = loop.generator().state().at("logits");
  loop.restore(snap);
  EXPECT_EQ(loop.steps_done(), 3);
  for (int i = 0; i < 3; ++i) second.push_back(loop.step().total);
  EXPECT_EQ(first, second);
  EXPECT_TENSOR_CLOSE(loop.generator().state().at("logits"), first_state, 0.0, 0.0);
  // The same through the pending queue (as the GUI would do it while running).
  loop.request_restore(snap);
  EXPECT_EQ(loop.step().total, first[0]);

  // A snapshot before any step (empty optimiser state) after switching optimiser: back to Adam from scratch.
  GuideLoop fresh(pixel_generator(), tiny_guide("a cat|a dog:-0.3"), LoopSettings{"adam", 0.05});
  LoopSnapshot start = fresh.snapshot();
  const double step0 = fresh.step().total, step1 = fresh.step().total;
  fresh.update_settings(LoopSettings{"sgd", 1.0});
  fresh.step();
  fresh.restore(start);
  EXPECT_EQ(fresh.settings().optimizer, "adam");
  EXPECT_EQ(fresh.step().total, step0);
  EXPECT_EQ(fresh.step().total, step1);
}

TEST(GuideLoop, SettingsChangesApplyAtTheNextStep) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideLoop loop(pixel_generator(), tiny_guide(), LoopSettings{"adam", 0.1});
  loop.step();
  loop.update_settings(LoopSettings{"adam", 0.5});
  EXPECT_EQ(loop.settings().learning_rate, 0.1);  // pending until the next step
  loop.step();
  EXPECT_EQ(loop.settings().learning_rate, 0.5);
  loop.update_settings(LoopSettings{"sgd", 1.0, 0.0, 0.9});
  loop.step();
  EXPECT_EQ(loop.settings().optimizer, "sgd");
  EXPECT_THROW(loop.update_settings(LoopSettings{"nope"}), Error);

  GuideOptions options = loop.guide().options();
  options.cutouts.cutn = 4;
  options.tv_weight = 0.5;
  loop.update_guide_options(options);
  EXPECT_EQ(loop.guide().options().cutouts.cutn, 8);
  GuideReport r = loop.step();
  EXPECT_EQ(loop.guide().options().cutouts.cutn, 4);
  EXPECT_GT(r.tv, 0.0);

  // Prompts edited between steps (from any thread) are used by the next step.
  loop.guide().set_prompt_weight(0, -2.0);
  r = loop.step();
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].weight, -2.0);
  EXPECT_LT(r.prompt_loss, 0.0);
}

TEST(GuideLoop, LearningRateChangeTakesEffect) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  // A large step, then the learning rate drops to almost nothing: the next step barely moves the image.
  GuideLoop a(pixel_generator(), tiny_guide(), LoopSettings{"sgd", 100.0});
  a.step();
  at::Tensor before = a.generator().state().at("logits");
  a.update_settings(LoopSettings{"sgd", 1e-9});
  a.step();
  const double moved = (a.generator().state().at("logits") - before).abs().max().item<double>();
  EXPECT_LT(moved, 1e-6);
}

TEST(GuideLoop, FrozenRegionStaysUnchanged) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  auto guide = tiny_guide();
  at::Tensor mask = at::zeros({32, 32});
  mask.narrow(0, 0, 12).fill_(1.0);  // top 12 rows
  guide->hooks().freeze_region(mask);
  guide->hooks().clip_grad_norm(1.0);  // parameter hook: runs between backward and the optimiser
  GuideLoop loop(pixel_generator(), guide, LoopSettings{"adam", 0.1});
  at::Tensor start = loop.generator().state().at("logits");
  for (int i = 0; i < 4; ++i) loop.step();
  at::Tensor end = loop.generator().state().at("logits");
  EXPECT_TENSOR_CLOSE(end.narrow(2, 0, 12), start.narrow(2, 0, 12), 0.0, 0.0);
  EXPECT_GT((end.narrow(2, 12, 20) - start.narrow(2, 12, 20)).abs().max().item<double>(), 1e-3);
}

// The exact freeze: Adam has momentum before the freeze, and Fourier's parameters each touch every pixel, so
// a zeroed gradient alone would let the frozen rows drift; the composite keeps them bit-identical.
TEST(GuideLoop, FreezeRegionIsExactForEveryGenerator) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  for (const std::string name : {"pixel", "fourier"}) {
    SCOPED_TRACE(name);
    GuideLoop loop(make_generator(name), tiny_guide(), LoopSettings{"adam", 0.1});
    for (int i = 0; i < 3; ++i) loop.step();  // momentum
    at::Tensor top = at::zeros({32, 32});
    top.narrow(0, 0, 12).fill_(1.0);  // rows 0..11
    loop.freeze_region(top);
    const at::Tensor at_freeze = loop.render_image();  // (1, 3, 32, 32): what the freeze keeps
    for (int i = 0; i < 5; ++i) {
      loop.step();
      EXPECT_EQ(max_diff(loop.last_image().narrow(2, 0, 12), at_freeze.narrow(2, 0, 12)), 0.0) << "step " << i;
    }
    const at::Tensor now = loop.render_image();
    EXPECT_EQ(max_diff(now.narrow(2, 0, 12), at_freeze.narrow(2, 0, 12)), 0.0);
    const double free_moved = max_diff(now.narrow(2, 12, 20), at_freeze.narrow(2, 12, 20));
    at::Tensor raw;
    {
      at::NoGradGuard no_grad;
      raw = loop.generator().render();
    }
    const double under_moved = max_diff(raw.narrow(2, 0, 12), at_freeze.narrow(2, 0, 12));
    std::printf("%s: unfrozen rows moved %.4f; the generator's own render under the frozen rows moved %.2e\n",
                name.c_str(), free_moved, under_moved);
    EXPECT_GT(free_moved, 1e-3);

    // A larger mask: rows frozen before keep their first values, the newly frozen columns keep today's.
    at::Tensor wider = top.clone();
    wider.narrow(1, 0, 8).fill_(1.0);  // + columns 0..7
    loop.freeze_region(wider);
    const at::Tensor at_second = loop.render_image();
    for (int i = 0; i < 3; ++i) loop.step();
    const at::Tensor later = loop.render_image();
    EXPECT_EQ(max_diff(later.narrow(2, 0, 12), at_freeze.narrow(2, 0, 12)), 0.0);
    EXPECT_EQ(max_diff(later.narrow(3, 0, 8), at_second.narrow(3, 0, 8)), 0.0);

    // Unfrozen: the rows are optimised again.
    loop.clear_freeze();
    loop.step();
    const at::Tensor resumed = loop.render_image();
    loop.step();
    loop.step();
    EXPECT_GT(max_diff(loop.render_image().narrow(2, 0, 12), resumed.narrow(2, 0, 12)), 1e-4);
  }
}

TEST(GuideLoop, FreezeRegionChecksTheMaskAndSurvivesARestore) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideLoop loop(pixel_generator(), tiny_guide(), LoopSettings{"adam", 0.1});
  EXPECT_THROW(loop.freeze_region(at::ones({3, 32, 32})), Error);
  EXPECT_THROW(loop.freeze_region(at::full({32, 32}, 2.0)), Error);
  LoopSnapshot start = loop.snapshot();
  const at::Tensor start_image = loop.render_image();
  loop.step();
  at::Tensor left = at::zeros({16, 16});  // half resolution: resized (bilinear) to 32 x 32, columns 0..14 are 1
  left.narrow(1, 0, 8).fill_(1.0);
  loop.freeze_region(left);
  const at::Tensor at_freeze = loop.render_image();
  EXPECT_GT(max_diff(at_freeze, start_image), 1e-3);
  loop.step();
  loop.restore(start);  // the generator goes back; the frozen pixels do not
  const at::Tensor restored = loop.render_image();
  EXPECT_LT(max_diff(restored.narrow(3, 0, 15), at_freeze.narrow(3, 0, 15)), 1e-6);
  EXPECT_EQ(max_diff(restored.narrow(3, 17, 15), start_image.narrow(3, 17, 15)), 0.0);
  loop.step();
  EXPECT_LT(max_diff(loop.render_image().narrow(3, 0, 15), at_freeze.narrow(3, 0, 15)), 1e-6);
}

// choose_start: every trial is scored, the lowest probe loss wins, and the loop is left exactly where a
// single run from the winning seed would be (same generator state after the same steps).
TEST(GuideLoop, ChooseStartKeepsTheBestTrialAsIfOnlyItHadRun) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  auto guide = tiny_guide();
  GuideLoop loop(make_generator("primitives", 32), guide, LoopSettings{"adam", 0.1});
  const uint64_t seed = 20;
  const StartChoice choice = choose_start(loop, 4, 3, seed);
  ASSERT_EQ(choice.scores.size(), 4u);
  EXPECT_EQ(choice.best, std::min_element(choice.scores.begin(), choice.scores.end()) - choice.scores.begin());
  EXPECT_EQ(loop.steps_done(), 3);
  EXPECT_GT(*std::max_element(choice.scores.begin(), choice.scores.end()), choice.scores[choice.best])
      << "different starts score differently";

  auto alone = make_generator("primitives", 32);
  alone->init_random(trial_seed(seed, choice.best));
  GuideLoop single(alone, guide, LoopSettings{"adam", 0.1});
  single.run(3);
  EXPECT_LT(max_diff(loop.render_image(), single.render_image()), 1e-6);
  // Both go on identically (optimiser state and step count came along).
  loop.step();
  single.step();
  EXPECT_LT(max_diff(loop.render_image(), single.render_image()), 1e-6);

  EXPECT_THROW(choose_start(loop, 0, 3, seed), Error);
  EXPECT_THROW(choose_start(loop, 2, -1, seed), Error);
}

}  // namespace
}  // namespace clipguide::guidance
