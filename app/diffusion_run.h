// A CLIP-guided diffusion render from run settings (clip-guide --generator diffusion, clip-studio): the
// guided-diffusion model from --diffusion_model/--diffusion_config, the process respaced to --steps as
// Disco Diffusion does, a DDIM/PLMS/DDPM sampler, and Disco's cond_fn as guidance::SamplerGuidance on the
// run's CLIP members and prompts. One step per call, so a program shows the x0 prediction and changes
// prompts or guidance between steps.
// Shapes: images (1, 3, H, W); H and W multiples of the UNet's size factor (32 for the released models).
#pragma once

#include "app/settings.h"
#include "generators/diffusion/model_file.h"
#include "guidance/guide.h"
#include "guidance/sampler_guidance.h"

#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

namespace clipguide::app {

// --diffusion_model (with --diffusion_config) on `device`, --checkpoint and --channels_last applied. No --diffusion_model: an
// Error naming it.
generators::diffusion::DiffusionModel load_diffusion(const RunSettings& settings, c10::Device device);

// The process a run samples: the model's, respaced to --steps as Disco does ("ddimN" for DDIM, with
// diffusion_steps rounded down to a multiple of N when N does not divide it; "N" for PLMS and DDPM).
generators::diffusion::GaussianDiffusion diffusion_process(const RunSettings& settings,
                                                           const generators::diffusion::ModelAndDiffusionConfig& config);

// Where step i stands in the 1000-entry cut schedules, as SamplerGuidance's t: Disco's cond_fn reads entry
// 1000 - (int(t') + 1), t' the original step i stands for, rescaled to 1000 steps; so t = (int(t') + 1) / 1000
// (the first step of a 50-step DDIM run reads entry 19, the last entry 999).
double schedule_position(const generators::diffusion::GaussianDiffusion& process, int64_t i);

// SamplerGuidance's options from the settings: the cut schedules, scales, clamp, micro-batches, the Guide's
// augmentations and precision. `init`: the init image in [-1, 1] for --init_scale (may be undefined).
guidance::SamplerGuidanceOptions sampler_guidance_options(const RunSettings& settings, uint64_t seed,
                                                          const at::Tensor& init);

struct DiffusionProgress {
  int64_t step = 0, total = 0;       // steps taken, of total
  at::Tensor x0;                     // (1, 3, H, W) in [0, 1]: the model's prediction of the final image
  guidance::SamplerGuidanceReport report;  // this step's guidance
  double its_per_second = 0;
};

class DiffusionRender {
 public:
  // The size is --size rounded down to the model's factor (`note` hears about it). Loads --init_image and
  // --mask at that size. Errors name the flag.
  DiffusionRender(const RunSettings& settings, const generators::diffusion::DiffusionModel& model,
                  std::vector<guidance::GuideMember> members, c10::Device device, uint64_t seed,
                  const std::function<void(const std::string&)>& note = {});

  bool done() const { return sampler_->done(); }
  int64_t total_steps() const { return sampler_->total_steps(); }
  int64_t steps_taken() const { return sampler_->steps_taken(); }
  DiffusionProgress step();
  void set_prompts(std::vector<guidance::GuidePrompt> prompts) { guide_->set_prompts(std::move(prompts)); }
  guidance::Guide& guide() { return *guide_; }
  // The guidance settings of `settings` (scales, cut schedules, clamp, micro-batches, augmentations) from the
  // next step on: the studio's live controls. Checked as at the start.
  void set_settings(const RunSettings& settings);
  const guidance::SamplerGuidanceOptions& guidance_options() const { return guidance_->options(); }
  // Keeps a region from the next step on: `keep` (H, W) or (1, 1, H, W) in [0, 1], 1 kept. Kept from
  // --init_image when the run has one, else from the current x0 prediction (what is shown now); undefined:
  // nothing kept (the run's own --mask, if any, is replaced too).
  void set_keep_mask(const at::Tensor& keep);
  // (1, 3, H, W) in [0, 1]: the current sample (the final image once done()).
  at::Tensor image() const;
  int64_t width() const { return width_; }
  int64_t height() const { return height_; }

 private:
  const generators::diffusion::DiffusionModel& model_;
  generators::diffusion::GaussianDiffusion diffusion_;
  std::shared_ptr<guidance::Guide> guide_;
  std::unique_ptr<guidance::SamplerGuidance> guidance_;
  std::unique_ptr<generators::diffusion::DiffusionSampler> sampler_;
  int64_t width_ = 0, height_ = 0;
  uint64_t seed_ = 0;
  at::Tensor init_;  // --init_image in [-1, 1], or undefined
  at::Tensor x0_;    // the last x0 prediction in [-1, 1]
  double seconds_ = 0;
  guidance::SamplerGuidanceReport last_report_;
};

}  // namespace clipguide::app
