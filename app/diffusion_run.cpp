// CLIP-guided diffusion runs from settings (see diffusion_run.h).
// ref: alembics/disco-diffusion Disco_Diffusion.ipynb v5 (do_run: timestep_respacing, cond_fn, sample_fn)
#include "app/diffusion_run.h"

#include "app/session.h"
#include "core/autocast.h"
#include "core/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/randn.h>

#include <chrono>
#include <cmath>

namespace clipguide::app {

namespace dm = generators::diffusion;

dm::DiffusionModel load_diffusion(const RunSettings& s, c10::Device device) {
  if (s.diffusion_model.empty())
    throw Error("--generator diffusion needs --diffusion_model FILE (e.g. 256x256_diffusion_uncond.pt)");
  auto model = dm::load_diffusion_model(s.diffusion_model, s.diffusion_config, device);
  model.unet->set_checkpointing(s.checkpoint);
  if (s.channels_last) {  // conv weights (O, I, k, k) NHWC: faster CUDA convolutions
    at::NoGradGuard no_grad;
    for (auto& p : model.unet->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  return model;
}

dm::GaussianDiffusion diffusion_process(const RunSettings& s, const dm::ModelAndDiffusionConfig& config) {
  auto process = config.diffusion;
  const bool ddim = dm::parse_sampler_kind(s.sampler) == dm::SamplerKind::kDdim;
  if (ddim && s.steps < process.diffusion_steps && process.diffusion_steps % s.steps != 0) {
    process.diffusion_steps = (process.diffusion_steps / s.steps) * s.steps;  // an integer DDIM stride
  }
  if (s.steps > process.diffusion_steps)
    throw Error("--steps " + std::to_string(s.steps) + ": the model's process has only " +
                std::to_string(process.diffusion_steps) + " steps");
  return dm::GaussianDiffusion(process, (ddim ? "ddim" : "") + std::to_string(s.steps));
}

double schedule_position(const dm::GaussianDiffusion& process, int64_t i) {
  const auto original = static_cast<double>(process.config().diffusion_steps);
  const double rescaled = static_cast<double>(process.timestep_map().at(static_cast<size_t>(i))) * 1000.0 / original;
  return (std::floor(rescaled) + 1) / 1000.0;
}

guidance::SamplerGuidanceOptions sampler_guidance_options(const RunSettings& s, uint64_t seed, const at::Tensor& init) {
  guidance::SamplerGuidanceOptions o;
  o.guide = guide_options(s, seed);
  o.cut_overview = guidance::StepSchedule::parse(s.cut_overview, "--cut_overview");
  o.cut_innercut = guidance::StepSchedule::parse(s.cut_innercut, "--cut_innercut");
  o.cut_ic_pow = guidance::StepSchedule::parse(s.cut_ic_pow, "--cut_ic_pow");
  o.cutn_batches = s.cutn_batches;
  o.clip_guidance_scale = s.clip_guidance_scale;
  o.tv_scale = s.tv_scale;
  o.range_scale = s.range_scale;
  o.sat_scale = s.sat_scale;
  o.init_scale = s.init_scale;
  o.init_image = init;
  o.clamp_max = s.clamp_max;
  return o;
}

DiffusionRender::DiffusionRender(const RunSettings& s, const dm::DiffusionModel& model,
                                 std::vector<guidance::GuideMember> members, c10::Device device, uint64_t seed,
                                 const std::function<void(const std::string&)>& note)
    : model_(model), diffusion_(diffusion_process(s, model.config)), seed_(seed) {
  const int64_t f = model.config.unet.size_factor();
  width_ = s.size.at(0) / f * f;
  height_ = s.size.at(1) / f * f;
  if (width_ == 0 || height_ == 0)
    throw Error("--size " + std::to_string(s.size[0]) + "x" + std::to_string(s.size[1]) +
                ": the diffusion model needs multiples of " + std::to_string(f) + " on each side");
  if ((width_ != s.size[0] || height_ != s.size[1]) && note)
    note("size " + std::to_string(s.size[0]) + "x" + std::to_string(s.size[1]) + " rounded to " + std::to_string(width_) +
         "x" + std::to_string(height_) + " (multiples of " + std::to_string(f) + " for the diffusion model)");
  dm::SamplerOptions options;
  options.kind = dm::parse_sampler_kind(s.sampler);
  options.eta = s.eta;
  options.skip_steps = s.skip_steps;
  at::Tensor init;
  if (!s.init_image.empty()) {
    init = load_image_resized(s.init_image, width_, height_).to(device) * 2 - 1;  // [-1, 1]
    options.init_image = init;
    init_ = init;
  }
  if (!s.mask.empty()) {
    if (!init.defined()) throw Error("--mask needs --init_image (what the black part keeps)");
    options.mask = load_image_resized(s.mask, width_, height_).mean(1, /*keepdim=*/true).to(device);  // white: 1
  }
  guide_ = std::make_shared<guidance::Guide>(std::move(members), guidance::GuideOptions{});
  guidance_ = std::make_unique<guidance::SamplerGuidance>(guide_, sampler_guidance_options(s, seed, init));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto noise = at::randn({1, model.config.unet.in_channels, height_, width_}, generator).to(device);
  // --precision bf16: the UNet under autocast (its norms and softmax stay fp32, its output is float);
  // --channels_last: its activations NHWC too.
  const auto unet = dm::model_fn(model.unet, diffusion_);
  const at::ScalarType precision = s.precision == "bf16" ? at::kBFloat16 : at::kFloat;
  const bool channels_last = s.channels_last;
  const dm::ModelFn model_fn = [unet, precision, device, channels_last](const at::Tensor& x, int64_t i) {
    AutocastGuard autocast(device.type(), precision);
    return unet(channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x, i).contiguous();
  };
  sampler_ = std::make_unique<dm::DiffusionSampler>(diffusion_, model_fn, options, noise, generator);
}

DiffusionProgress DiffusionRender::step() {
  const auto start = std::chrono::steady_clock::now();
  const int64_t step = sampler_->steps_taken();
  // Disco's cond_fn: the loss on x0 blended with x_t by sqrt(1 - alphā), its gradient followed downhill.
  const dm::GuidanceFn guidance = [&](const at::Tensor& x, int64_t i, const dm::MeanVariance& out) {
    auto result = guidance_->gradient(x, out.pred_xstart, schedule_position(diffusion_, i), step,
                                      diffusion_.sqrt_one_minus_alpha_bar(i));
    last_report_ = result.report;
    return -result.grad;
  };
  const auto taken = sampler_->step(guidance);
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  DiffusionProgress p;
  p.step = sampler_->steps_taken();
  p.total = sampler_->total_steps();
  x0_ = taken.pred_xstart;
  p.x0 = ((taken.pred_xstart + 1) / 2).clamp(0, 1);
  p.report = last_report_;
  p.its_per_second = seconds_ > 0 ? static_cast<double>(p.step) / seconds_ : 0;
  return p;
}

void DiffusionRender::set_settings(const RunSettings& s) {
  RunSettings checked = s;
  check(checked);
  guidance_->set_options(sampler_guidance_options(checked, seed_, init_));
}

void DiffusionRender::set_keep_mask(const at::Tensor& keep) {
  if (!keep.defined()) return sampler_->set_inpainting(init_, {});
  if (keep.numel() != width_ * height_)
    throw Error("keep mask: " + shape_str(keep.sizes()) + ", expected " + std::to_string(height_) + "x" +
                std::to_string(width_) + " values (the run's image)");
  const auto k = keep.reshape({1, 1, height_, width_}).to(sampler_->current().device(), at::kFloat);
  const auto source = init_.defined() ? init_ : x0_.defined() ? x0_ : sampler_->current();
  sampler_->set_inpainting(source, 1 - k);
}

at::Tensor DiffusionRender::image() const { return ((sampler_->current() + 1) / 2).clamp(0, 1); }

}  // namespace clipguide::app
