// Tests for generators/diffusion: the UNet, the schedules and the samplers against guided_diffusion on small
// random-weight models (tests/reference/diffusion.py), config inference for the released
// architectures, inpainting masks, and the errors bad weights, configs and schedules get.
// Shapes: x (B, 3, H, W); 32 x 32 in the sampler cases.
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/io/weights.h"
#include "generators/diffusion/config.h"
#include "generators/diffusion/gaussian_diffusion.h"
#include "generators/diffusion/model_file.h"
#include "generators/diffusion/sampler.h"
#include "generators/diffusion/unet.h"
#include "core/skip_init.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <fstream>

namespace clipguide::generators::diffusion {
namespace {

using test::error_of;
using test::fixture_dir;
using test::max_abs_diff;

constexpr double kUNetAtol = 1e-4;     // the bound for one forward (fp32, summation order)
constexpr double kSamplerAtol = 1e-3;  // the bound for sampler steps and whole loops

const clipguide::TensorMap& expected() {
  static const auto tensors = clipguide::read_safetensors(fixture_dir("diffusion") / "expected.safetensors").tensors;
  return tensors;
}
const at::Tensor& want(const std::string& key) {
  const auto it = expected().find(key);
  if (it == expected().end()) throw Error("fixture has no " + key);
  return it->second;
}

// Model b's architecture beyond what its weights show: two heads, QKVAttention's order.
ModelAndDiffusionConfig b_base() {
  ModelAndDiffusionConfig base;
  base.unet.num_heads = 2;
  base.unet.num_head_channels = -1;
  base.unet.use_new_attention_order = true;
  return base;
}

DiffusionModel model_a() { return load_diffusion_model(fixture_dir("diffusion") / "a.pt", fixture_dir("diffusion") / "a.json"); }

// ---------------------------------------------------------------------------------------------------------
// The UNet

TEST(DiffusionUNet, MatchesGuidedDiffusionWithJsonConfigAndFp16Weights) {
  auto m = model_a();
  at::NoGradGuard no_grad;
  const auto out = m.unet->forward(want("a.x"), want("a.t"));
  std::cout << "model a: max |diff| " << max_abs_diff(out, want("a.out")) << "\n";
  EXPECT_TENSOR_CLOSE(out, want("a.out"), kUNetAtol, 0);
}

TEST(DiffusionUNet, MatchesGuidedDiffusionWithInferredArchitectureAndClassLabels) {
  auto m = load_diffusion_model(fixture_dir("diffusion") / "b.pt", {}, c10::kCPU, b_base());
  EXPECT_EQ(m.config.unet.num_classes, 10);
  EXPECT_FALSE(m.config.unet.conv_resample);
  EXPECT_FALSE(m.config.unet.use_scale_shift_norm);
  EXPECT_EQ(m.config.unet.num_res_blocks, 2);
  EXPECT_EQ(m.config.diffusion.variance_type, VarianceType::kFixedLarge);  // no learn_sigma
  at::NoGradGuard no_grad;
  const auto out = m.unet->forward(want("b.x"), want("b.t"), want("b.y"));
  std::cout << "model b: max |diff| " << max_abs_diff(out, want("b.out")) << "\n";
  EXPECT_TENSOR_CLOSE(out, want("b.out"), kUNetAtol, 0);
  EXPECT_NE(error_of([&] { m.unet->forward(want("b.x"), want("b.t")); }).find("needs one label per image"), std::string::npos);
}

TEST(DiffusionUNet, MatchesGuidedDiffusionWithImageSizeDefaultChannelMult) {
  const auto dir = fixture_dir("diffusion");
  auto m = load_diffusion_model(dir / "c.pt", dir / "c.json");
  EXPECT_EQ(m.config.unet.channel_mult, (std::vector<double>{1, 2, 3, 4}));
  at::NoGradGuard no_grad;
  EXPECT_TENSOR_CLOSE(m.unet->forward(want("c.x"), want("c.t")), want("c.out"), kUNetAtol, 0);
  // Inferred, the same architecture except the head count, which weights cannot show: given in the base.
  ModelAndDiffusionConfig base;
  base.unet.num_head_channels = -1;
  base.unet.num_heads = 4;
  auto inferred = load_diffusion_model(dir / "c.pt", {}, c10::kCPU, base);
  EXPECT_EQ(inferred.config.unet.image_size, 64);
  EXPECT_EQ(inferred.config.unet.attention_ds, m.config.unet.attention_ds);
  EXPECT_TRUE(inferred.config.unet.conv_resample);
  EXPECT_FALSE(inferred.config.unet.resblock_updown);
  EXPECT_TENSOR_CLOSE(inferred.unet->forward(want("c.x"), want("c.t")), want("c.out"), kUNetAtol, 0);
}

TEST(DiffusionUNet, InfersTheReleasedArchitecturesFromTheirShapes) {
  const auto dir = fixture_dir("diffusion");
  for (const std::string name : {"256x256_diffusion_uncond", "512x512_diffusion_uncond_finetune_008100"}) {
    SCOPED_TRACE(name);
    const auto shapes = clipguide::read_safetensors(dir / (name + ".shapes.safetensors")).tensors;
    clipguide::TensorMap meta;
    for (const auto& [key, shape] : shapes) {
      const auto s = shape.contiguous();
      meta[key] = at::empty(c10::IntArrayRef(s.data_ptr<int64_t>(), s.numel()), at::device(at::kMeta));
    }
    const auto inferred = infer_unet_config(meta);  // over the defaults: Disco's head width 64
    const auto json = read_model_config(dir / (name + ".json")).unet;
    EXPECT_EQ(inferred.image_size, json.image_size);
    EXPECT_EQ(inferred.channel_mult, json.channel_mult);
    auto sorted = [](std::vector<int64_t> v) { std::sort(v.begin(), v.end()); return v; };
    EXPECT_EQ(sorted(inferred.attention_ds), sorted(json.attention_ds));
    EXPECT_EQ(inferred.model_channels, 256);
    EXPECT_TRUE(inferred.learn_sigma());
    EXPECT_TRUE(inferred.resblock_updown);
    EXPECT_TRUE(inferred.use_scale_shift_norm);
    SkipInit skip;  // shapes only
    UNetModel model(inferred);
    int64_t checked = 0;
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(meta.count(p.key())) << p.key();
      EXPECT_EQ(p.value().sizes(), meta.at(p.key()).sizes()) << p.key();
      ++checked;
    }
    EXPECT_EQ(checked, static_cast<int64_t>(meta.size()));
  }
}

TEST(DiffusionUNet, CheckpointingGivesTheSameInputGradient) {
  auto m = model_a();
  const auto x = want("a.x").clone();
  const auto w = at::randn({2, 6, 32, 32}, at::TensorOptions().dtype(at::kFloat));
  auto grad = [&](bool checkpointing) {
    m.unet->set_checkpointing(checkpointing);
    const auto xi = x.clone().requires_grad_();
    const auto loss = (m.unet->forward(xi, want("a.t")) * w).sum();
    return torch::autograd::grad({loss}, {xi})[0];
  };
  EXPECT_TENSOR_CLOSE(grad(true), grad(false), 1e-5, 0);
}

// ---------------------------------------------------------------------------------------------------------
// Schedules

TEST(DiffusionSchedule, BetasAndRespacingMatchGuidedDiffusion) {
  EXPECT_TENSOR_CLOSE(at::tensor(beta_schedule(BetaSchedule::kLinear, 1000), at::kDouble), want("betas.linear"), 1e-15, 0);
  EXPECT_TENSOR_CLOSE(at::tensor(beta_schedule(BetaSchedule::kCosine, 1000), at::kDouble), want("betas.cosine"), 1e-15, 0);
  for (const std::string r : {"ddim50", "ddim25", "250", "25,25,50", "10,0007,3", "1000", "ddim1000"}) {
    SCOPED_TRACE(r);
    const auto steps = space_timesteps(1000, r);
    EXPECT_TRUE(at::equal(at::tensor(steps, at::kLong), want("respace." + r)));
    DiffusionConfig config;
    GaussianDiffusion d(config, r);
    std::vector<double> cumprod;
    for (int64_t i = 0; i < d.num_timesteps(); ++i) cumprod.push_back(d.alpha_bar(i));
    EXPECT_TENSOR_CLOSE(at::tensor(cumprod, at::kDouble), want("cumprod." + r), 1e-12, 0);
  }
}

TEST(DiffusionSchedule, BadRespacingsAreNamed) {
  for (const std::string r : {"ddim0", "ddim", "ddimx", "abc", "25,,50", "600,600", "-5", "ddim999"}) {
    SCOPED_TRACE(r);
    const auto message = error_of([&] { space_timesteps(1000, r); });
    EXPECT_NE(message.find("\"" + r + "\""), std::string::npos) << message;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Samplers, with the fixture's deterministic guidance through the UNet

struct SamplerCase {
  DiffusionModel model = model_a();
  GaussianDiffusion diffusion{model.config.diffusion};
  GuidanceFn guidance = [](const at::Tensor& x, int64_t, const MeanVariance& out) {
    const auto loss = 0.5 * (out.pred_xstart - want("guide.target")).pow(2).sum();
    return -torch::autograd::grad({loss}, {x})[0] * 0.5;  // the fixture's GUIDE_SCALE
  };

  DiffusionSampler sampler(SamplerOptions options, uint64_t seed = 0) {
    return DiffusionSampler(diffusion, model_fn(model.unet, diffusion), std::move(options), want("ddim.x"),
                            at::make_generator<at::CPUGeneratorImpl>(seed));
  }
  at::Tensor run(SamplerOptions options, uint64_t seed = 0) {
    auto s = sampler(std::move(options), seed);
    while (!s.done()) s.step(guidance);
    return s.current();
  }
};

void expect_sampler_close(const at::Tensor& got, const std::string& key) {
  std::cout << key << ": max |diff| " << max_abs_diff(got, want(key)) << "\n";
  EXPECT_TENSOR_CLOSE(got, want(key), kSamplerAtol, 0);
}

TEST(DiffusionSampler, OneStepMatchesGuidedDiffusion) {
  SamplerCase c;
  ASSERT_EQ(c.diffusion.num_timesteps(), 10);
  SamplerOptions ddim;
  ddim.eta = 0.5;
  auto s = c.sampler(ddim, 123);
  ASSERT_EQ(s.next_index(), 9);
  auto step = s.step(c.guidance);
  expect_sampler_close(step.sample, "ddim.step.sample");
  expect_sampler_close(step.pred_xstart, "ddim.step.pred");
  SamplerOptions plms;
  plms.kind = SamplerKind::kPlms;
  step = c.sampler(plms).step(c.guidance);
  expect_sampler_close(step.sample, "plms.step.sample");
  expect_sampler_close(step.pred_xstart, "plms.step.pred");
}

TEST(DiffusionSampler, WholeLoopsMatchGuidedDiffusion) {
  SamplerCase c;
  expect_sampler_close(c.run({}), "ddim.loop");
  SamplerOptions plms;
  plms.kind = SamplerKind::kPlms;
  expect_sampler_close(c.run(plms), "plms.loop");
  SamplerOptions ddpm;
  ddpm.kind = SamplerKind::kDdpm;
  expect_sampler_close(c.run(ddpm, 5), "ddpm.loop");
  SamplerOptions skip;
  skip.skip_steps = 3;
  skip.init_image = want("skip.init");
  EXPECT_EQ(c.sampler(skip).total_steps(), 7);
  expect_sampler_close(c.run(skip), "skip.loop");
}

TEST(DiffusionSampler, SameSeedSameImageAndGuidanceChangesIt) {
  SamplerCase c;
  SamplerOptions ddpm;
  ddpm.kind = SamplerKind::kDdpm;
  EXPECT_TRUE(at::equal(c.run(ddpm, 9), c.run(ddpm, 9)));
  EXPECT_FALSE(at::equal(c.run(ddpm, 9), c.run(ddpm, 10)));
  auto unguided = c.sampler({});
  while (!unguided.done()) unguided.step();
  EXPECT_GT(max_abs_diff(unguided.current(), c.run({})), 1e-2);
}

TEST(DiffusionSampler, MaskKeepsTheInitImageOutsideAndGuidesInside) {
  SamplerCase c;
  const auto init = want("skip.init");
  auto mask = at::zeros({1, 1, 32, 32});
  mask.narrow(3, 0, 16).fill_(1);  // the left half is generated
  for (auto kind : {SamplerKind::kDdim, SamplerKind::kPlms, SamplerKind::kDdpm}) {
    SCOPED_TRACE(to_string(kind));
    SamplerOptions o;
    o.kind = kind;
    o.init_image = init;
    o.mask = mask;
    o.eta = 1.0;
    auto s = c.sampler(o, 4);
    SamplerStep last;
    while (!s.done()) last = s.step(c.guidance);
    const auto right = [](const at::Tensor& t) { return t.narrow(3, 16, 16); };
    const auto left = [](const at::Tensor& t) { return t.narrow(3, 0, 16); };
    EXPECT_TRUE(at::equal(right(s.current()), right(init.expand_as(s.current()))));
    EXPECT_TRUE(at::equal(right(last.pred_xstart), right(init.expand_as(last.pred_xstart))));
    EXPECT_GT(max_abs_diff(left(s.current()), left(init)), 0.1);
  }
}

TEST(DiffusionSampler, BadOptionsAreNamed) {
  SamplerCase c;
  SamplerOptions o;
  o.skip_steps = 10;
  EXPECT_NE(error_of([&] { c.sampler(o); }).find("skip_steps 10"), std::string::npos);
  o = {};
  o.mask = at::ones({1, 1, 32, 32});
  EXPECT_NE(error_of([&] { c.sampler(o); }).find("needs an init image"), std::string::npos);
  o.init_image = want("skip.init");
  o.mask = at::ones({1, 1, 16, 32});
  EXPECT_NE(error_of([&] { c.sampler(o); }).find("the mask is [1, 1, 16, 32]"), std::string::npos);
  o = {};
  o.kind = SamplerKind::kPlms;
  o.plms_order = 5;
  EXPECT_NE(error_of([&] { c.sampler(o); }).find("order 5"), std::string::npos);
  EXPECT_NE(error_of([&] { parse_sampler_kind("euler"); }).find("ddim, plms or ddpm"), std::string::npos);
  auto s = c.sampler({});
  const GuidanceFn wrong = [](const at::Tensor&, int64_t, const MeanVariance&) { return at::zeros({1, 3, 8, 8}); };
  EXPECT_NE(error_of([&] { s.step(wrong); }).find("the guidance gave [1, 3, 8, 8]"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------------------
// Bad configs and weights

std::filesystem::path write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

TEST(DiffusionModelFile, BadConfigsAreNamed) {
  auto bad = [](const std::string& json) { return error_of([&] { parse_model_config(json, "cfg.json"); }); };
  EXPECT_NE(bad("{\"num_channels\": \"many\"}").find("'num_channels' is \"many\", expected a number"), std::string::npos);
  EXPECT_NE(bad("{\"image_sise\": 256}").find("unknown key 'image_sise'"), std::string::npos);
  EXPECT_NE(bad("{\"noise_schedule\": \"sqrt\"}").find("\"linear\" or \"cosine\""), std::string::npos);
  EXPECT_NE(bad("[1, 2]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(bad("{\"image_size\": 100}").find("'channel_mult'"), std::string::npos);
  EXPECT_NE(bad("{\"num_channels\": 48}").find("multiple of 32"), std::string::npos);
  EXPECT_NE(bad("{\"num_head_channels\": 48}").find("num_head_channels 48"), std::string::npos);
  EXPECT_NE(bad("{\"attention_resolutions\": \"32,abc\"}").find("'attention_resolutions'"), std::string::npos);
  EXPECT_NE(bad("{\"learn_sigma\": 2}").find("true or false"), std::string::npos);
  EXPECT_NE(bad("{not json").find("cfg.json: not valid JSON"), std::string::npos);
  // Disco's own config, integers as strings and timestep_respacing as a number, parses.
  const auto disco = parse_model_config(
      "{\"attention_resolutions\": \"32, 16, 8\", \"image_size\": 512, \"timestep_respacing\": 250, "
      "\"num_channels\": \"256\", \"use_fp16\": true, \"learn_sigma\": true}", "disco");
  EXPECT_EQ(disco.unet.attention_ds, (std::vector<int64_t>{16, 32, 64}));
  EXPECT_EQ(disco.unet.channel_mult, (std::vector<double>{0.5, 1, 1, 2, 2, 4, 4}));
  EXPECT_EQ(disco.diffusion.timestep_respacing, "250");
}

TEST(DiffusionModelFile, BadWeightsAreNamed) {
  const auto dir = fixture_dir("diffusion");
  const auto tmp = test::temp_dir();
  // The architecture in the JSON does not match the weights: the key, got and expected shapes.
  const auto wrong = write_text(tmp / "wrong.json", "{\"image_size\": 32, \"num_channels\": 32, \"channel_mult\": \"1,2,4\", "
                                                    "\"num_res_blocks\": 1, \"attention_resolutions\": \"16,8\", \"learn_sigma\": true}");
  auto message = error_of([&] { load_diffusion_model(dir / "a.pt", wrong); });
  EXPECT_NE(message.find("a.pt"), std::string::npos) << message;
  EXPECT_NE(message.find("wrong.json"), std::string::npos) << message;
  EXPECT_NE(message.find("emb_layers.1.weight': got [64, 256], expected [64, 128]"), std::string::npos) << message;
  // A missing key, a non-finite value, weights of something else, a corrupt file.
  auto sd = clipguide::read_weights(dir / "b.pt").tensors;
  sd.erase("out.2.bias");
  clipguide::write_safetensors(tmp / "missing.safetensors", sd);
  message = error_of([&] { load_diffusion_model(tmp / "missing.safetensors", {}, c10::kCPU, b_base()); });
  EXPECT_NE(message.find("out.2.bias"), std::string::npos) << message;
  sd = clipguide::read_weights(dir / "b.pt").tensors;
  sd["middle_block.1.qkv.weight"].view(-1)[3] = std::nan("");
  clipguide::write_safetensors(tmp / "nan.safetensors", sd);
  message = error_of([&] { load_diffusion_model(tmp / "nan.safetensors", {}, c10::kCPU, b_base()); });
  EXPECT_NE(message.find("middle_block.1.qkv.weight"), std::string::npos) << message;
  clipguide::write_safetensors(tmp / "other.safetensors", {{"encoder.conv_in.weight", at::zeros({4, 3, 3, 3})}});
  message = error_of([&] { load_diffusion_model(tmp / "other.safetensors"); });
  EXPECT_NE(message.find("not a guided-diffusion UNetModel"), std::string::npos) << message;
  EXPECT_NE(message.find("other.safetensors"), std::string::npos) << message;
  write_text(tmp / "corrupt.pt", "PK\x03\x04 this is not a zip");
  message = error_of([&] { load_diffusion_model(tmp / "corrupt.pt"); });
  EXPECT_NE(message.find("corrupt.pt"), std::string::npos) << message;
}

}  // namespace
}  // namespace clipguide::generators::diffusion
