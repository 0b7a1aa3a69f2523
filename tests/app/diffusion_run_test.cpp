// A diffusion run from settings (app/diffusion_run.h) on the diffusion fixture's model a (32x32, 100 steps)
// and the clip_parity fixture's tiny CLIP: Disco's respacing rule, the settings reaching the guidance, live
// settings and a kept region taking effect between steps, and determinism.
#include "app/diffusion_run.h"
#include "app/session.h"
#include "core/error.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

namespace app = clipguide::app;
using clipguide::test::fixture_dir;
using clipguide::test::max_abs_diff;

namespace {

app::RunSettings settings() {
  app::RunSettings s;
  s.clip_models = {(fixture_dir("clip_parity") / "hf_clip").string()};
  s.vocab = clipguide::test::openai_vocabulary().string();
  s.diffusion_model = (fixture_dir("diffusion") / "a.pt").string();
  s.diffusion_config = (fixture_dir("diffusion") / "a.json").string();
  s.steps = 10;
  s.size = {32, 32};
  s.cut_overview = "2";
  s.cut_innercut = "2";
  s.prompts = "a red circle";
  app::check(s);
  return s;
}

struct LoadedRun {
  app::RunSettings s = settings();
  std::vector<clipguide::guidance::GuideMember> members = app::load_members(s, c10::kCPU);
  clipguide::generators::diffusion::DiffusionModel model = app::load_diffusion(s, c10::kCPU);

  std::unique_ptr<app::DiffusionRender> render(const app::RunSettings& with) {
    auto r = std::make_unique<app::DiffusionRender>(with, model, members, c10::kCPU, 7);
    r->set_prompts(app::prompt_phases(with, with.prompts)[0]);
    return r;
  }
};

TEST(DiffusionRun, RespacesAsDiscoDoes) {
  const auto config = clipguide::generators::diffusion::ModelAndDiffusionConfig{};  // 1000 steps
  app::RunSettings s;
  s.steps = 300;  // DDIM: diffusion_steps becomes 900, a multiple of 300
  auto d = app::diffusion_process(s, config);
  EXPECT_EQ(d.num_timesteps(), 300);
  EXPECT_EQ(d.timestep_map().back(), 897);
  s.sampler = "plms";  // sections: the 1000 steps kept
  d = app::diffusion_process(s, config);
  EXPECT_EQ(d.num_timesteps(), 300);
  EXPECT_EQ(d.timestep_map().back(), 999);
  s.steps = 2000;
  EXPECT_NE(clipguide::test::error_of([&] { app::diffusion_process(s, config); }).find("--steps 2000"), std::string::npos);
}

TEST(DiffusionRun, ReadsTheCutSchedulesAtDiscosEntries) {
  // Disco: entry 1000 - (int(t') + 1), t' the original step rescaled to 1000 steps.
  const auto config = clipguide::generators::diffusion::ModelAndDiffusionConfig{};
  app::RunSettings s;
  s.steps = 50;  // DDIM stride 20: original steps 0, 20, ..., 980
  const auto d = app::diffusion_process(s, config);
  std::string ramp = "[0";  // entry k holds k
  for (int k = 1; k < 1000; ++k) ramp += "," + std::to_string(k);
  const auto schedule = clipguide::guidance::StepSchedule::parse(ramp + "]", "ramp");
  EXPECT_EQ(schedule.at(app::schedule_position(d, 49)), 19);  // the first step
  EXPECT_EQ(schedule.at(app::schedule_position(d, 24)), 519);
  EXPECT_EQ(schedule.at(app::schedule_position(d, 0)), 999);  // the last
  s.steps = 3;  // diffusion_steps 999: original steps 0, 333, 666 rescaled by 1000 / 999
  const auto d3 = app::diffusion_process(s, config);
  EXPECT_EQ(schedule.at(app::schedule_position(d3, 2)), 1000 - (666 * 1000 / 999 + 1));
}

TEST(DiffusionRun, SettingsReachTheGuidance) {
  app::RunSettings s = settings();
  s.clip_guidance_scale = 123;
  s.clamp_max = 0.5;
  s.cut_overview = "[3]*500+[1]*500";
  const auto o = app::sampler_guidance_options(s, 1, {});
  EXPECT_EQ(o.clip_guidance_scale, 123);
  EXPECT_EQ(o.clamp_max, 0.5);
  EXPECT_EQ(o.cut_overview.at(1.0), 3);
  EXPECT_EQ(o.cut_overview.at(0.1), 1);
}

TEST(DiffusionRun, SameSeedSameImageAndLiveSettingsChangeTheRun) {
  LoadedRun run;
  auto a = run.render(run.s), b = run.render(run.s), c = run.render(run.s);
  app::RunSettings off = run.s;
  off.clip_guidance_scale = 0;
  for (int i = 0; i < 3; ++i) {
    a->step();
    b->step();
    const auto p = c->step();
    EXPECT_FALSE(p.report.clip.prompts.empty());
  }
  c->set_settings(off);  // from the next step on: no CLIP loss
  while (!a->done()) {
    a->step();
    b->step();
    const auto p = c->step();
    EXPECT_TRUE(p.report.clip.prompts.empty());
  }
  EXPECT_TRUE(c->done());
  EXPECT_TRUE(at::equal(a->image(), b->image()));
  EXPECT_FALSE(at::equal(a->image(), c->image()));  // clamp_max keeps the difference small
  off.steps = 0;
  EXPECT_NE(clipguide::test::error_of([&] { c->set_settings(off); }).find("--steps"), std::string::npos);
}

TEST(DiffusionRun, ChannelsLastGivesTheSameImage) {
  LoadedRun run;
  auto plain = run.render(run.s);
  app::RunSettings nhwc = run.s;
  nhwc.channels_last = true;
  LoadedRun other;
  other.model = app::load_diffusion(nhwc, c10::kCPU);
  auto fast = other.render(nhwc);
  while (!plain->done()) {
    plain->step();
    fast->step();
  }
  EXPECT_TENSOR_CLOSE(fast->image(), plain->image(), 1e-4, 0);
}

TEST(DiffusionRun, AKeptRegionStaysAsShownWhenKept) {
  LoadedRun run;
  auto r = run.render(run.s);
  auto p = r->step();
  auto keep = at::zeros({32, 32});
  keep.narrow(0, 24, 8).fill_(1);  // the bottom rows
  r->set_keep_mask(keep);
  const auto kept = p.x0.narrow(2, 24, 8).clone();
  while (!r->done()) p = r->step();
  EXPECT_LT(max_abs_diff(r->image().narrow(2, 24, 8), kept), 1e-5);
  EXPECT_NE(clipguide::test::error_of([&] { r->set_keep_mask(at::zeros({3, 3})); }).find("keep mask"), std::string::npos);
}

}  // namespace
