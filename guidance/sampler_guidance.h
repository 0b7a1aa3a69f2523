// CLIP guidance for diffusion samplers: what Disco Diffusion's cond_fn computes, as one library call that a
// sampler written anywhere (its own model, its own schedule) makes each step. In: the noisy image x_t, a
// differentiable prediction of the clean image x0 made from it, the step's position t. Out: the gradient of
// the guidance loss with respect to x_t, cleaned (non-finite values to 0, optionally clamped by its RMS), and
// the loss's parts. The sampler moves against the gradient (Disco's cond_fn returns its negative).
//
// The loss, on x_in = blend · x0 + (1 - blend) · x_t (Disco: blend = sqrt(1 - alphā_t)), images in [-1, 1]:
//   clip_guidance_scale · (the Guide's prompt loss on cutouts of (x_in + 1) / 2)
//   + tv_scale · tv(x_in) + range_scale · range(x0) + sat_scale · saturation(x_in) + init_scale · init(x_in)
// with Disco's definitions (range: squared excess beyond [-1, 1]; saturation: mean absolute excess; tv: mean
// squared neighbour difference with replicate padding). init: mean squared difference to the init image
// (Disco uses LPIPS, whose VGG weights cannot ship here).
//
// Cutouts follow Disco's schedules over the run: cut_overview whole-image views and cut_innercut inner crops
// of size exponent cut_ic_pow, each a 1000-entry schedule ("[12]*400+[4]*600"), and cutn_batches such sets
// per step, scored one set (micro-batch) at a time with their gradients accumulated: the gradient of one
// batch of all of them.
// Shapes: B images, H x W pixels.
#pragma once

#include "guidance/guide.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace clipguide::guidance {

// A value per thousandth of a sampling run, as Disco writes its cut schedules: "[12]*400+[4]*600" (lists
// of numbers, each repeated, joined by +; 1000 entries in all), or one number for the whole run.
class StepSchedule {
 public:
  StepSchedule(double constant = 0);  // NOLINT: a number is a schedule
  // A clipguide::Error naming `name` for anything else: malformed terms, or not 1000 entries in all.
  static StepSchedule parse(const std::string& text, const std::string& name);
  // The value at t in [0, 1], 1 being the start (pure noise): entry floor((1 - t) · 1000), clamped.
  double at(double t) const;
  const std::vector<double>& values() const { return values_; }

 private:
  std::vector<double> values_;  // 1000 entries
};

struct SamplerGuidanceOptions {
  GuideOptions guide;  // augmentations, padding, seed, precision, prompt distance; its cutout counts, method,
                       // micro-batches and regularisers are set per step from the fields below
  StepSchedule cut_overview = StepSchedule::parse("[12]*400+[4]*600", "cut_overview");  // Disco's defaults
  StepSchedule cut_innercut = StepSchedule::parse("[4]*400+[12]*600", "cut_innercut");
  StepSchedule cut_ic_pow = 1.0;  // inner crops' size exponent (cut_pow)
  int64_t cutn_batches = 4;       // cut sets per step, one micro-batch each
  double clip_guidance_scale = 5000;
  double tv_scale = 0, range_scale = 150, sat_scale = 0, init_scale = 0;
  at::Tensor init_image;  // (1 or B, 3, H, W) in [-1, 1]; needed when init_scale != 0
  double clamp_max = 0.05;  // the gradient scaled down to this RMS when larger (Disco's clamp_grad); 0: off
};

struct SamplerGuidanceReport {
  GuideReport clip;                 // the prompt losses (unscaled) and similarities of the step's cutouts
  double tv = 0, range = 0, saturation = 0, init = 0;  // the regularisers, unscaled
  double total = 0;                 // the scaled loss whose gradient is returned
  int64_t overview = 0, innercut = 0;  // the cut set used at this step
  double ic_pow = 1.0;
  double raw_rms = 0;               // the gradient's RMS with non-finite values zeroed, before the clamp
};

struct SamplerGuidanceResult {
  at::Tensor grad;  // d total / d x_t, like x_t; finite
  SamplerGuidanceReport report;
};

class SamplerGuidance {
 public:
  // `guide`: the CLIP members and prompts (set_prompts on it as for any Guide). Bad options: Error.
  SamplerGuidance(std::shared_ptr<Guide> guide, SamplerGuidanceOptions options);

  // One step: x_t (B, 3, H, W) requiring grad, x0 differentiable from it (same shape), t in [0, 1] (1: the
  // first, noisiest step), `step` for the cutouts' seeds, blend as above. Errors name what is wrong (shapes,
  // t out of range, an x0 with no graph to x_t). Neither x_t's .grad nor the model's parameters change.
  SamplerGuidanceResult gradient(const at::Tensor& x_t, const at::Tensor& x0, double t, int64_t step,
                                 double blend = 1.0);

  Guide& guide() { return *guide_; }
  const SamplerGuidanceOptions& options() const { return options_; }
  void set_options(SamplerGuidanceOptions options);  // checked as in the constructor

 private:
  std::shared_ptr<Guide> guide_;
  SamplerGuidanceOptions options_;
};

// Disco's regularisers on images in [-1, 1], as scalars: tv and range per image (means over C, H, W) summed
// over the batch, saturation one mean over everything.
at::Tensor disco_tv_loss(const at::Tensor& x);          // squared neighbour differences, replicate-padded
at::Tensor disco_range_loss(const at::Tensor& x);       // squared excess beyond [-1, 1]
at::Tensor disco_saturation_loss(const at::Tensor& x);  // absolute excess beyond [-1, 1]

}  // namespace clipguide::guidance
