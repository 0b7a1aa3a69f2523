// Samplers over a GaussianDiffusion, one step per call so a caller can show the x0 prediction and change the
// guidance between steps: DDIM (eta), PLMS (pseudo linear multistep, order 1-4) and ancestral DDPM
// (p_sample). Each takes an optional guidance gradient per step, computed from the model's differentiable
// output (guided_diffusion's cond_fn_with_grad: one model evaluation serves the step and the guidance), with
// DDIM and PLMS conditioning the score (condition_score) and DDPM the mean (condition_mean), as
// guided_diffusion does. skip_steps starts from an init image noised to the first kept step; a mask limits
// the guidance to where it is 1 and keeps the init image, noised to each step's level, where it is 0.
// Random draws come from the sampler's own generator in guided_diffusion's order (one normal draw like x per
// DDIM or DDPM step), so a seed gives the same images every run, and the same as guided_diffusion's loops
// under torch.manual_seed with that seed.
// ref: guided-diffusion-sdk 1.0.0 guided_diffusion/gaussian_diffusion.py (ddim_sample_with_grad,
// plms_sample, p_sample_with_grad, *_loop_progressive)
// Shapes: x (B, C, H, W) in [-1, 1] at the end; mask (1 or B, 1, H, W).
#pragma once

#include "generators/diffusion/gaussian_diffusion.h"

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

namespace clipguide::generators::diffusion {

enum class SamplerKind { kDdim, kPlms, kDdpm };
SamplerKind parse_sampler_kind(const std::string& name);  // "ddim", "plms", "ddpm"; else an Error listing them
std::string to_string(SamplerKind kind);

// The model's output at diffusion step i for x (guided_diffusion's model wrapped to its timesteps).
using ModelFn = std::function<at::Tensor(const at::Tensor& x, int64_t i)>;
// The guidance: x (requires grad), the step, and p_mean_variance of the model's output, differentiable in x.
// Returns the gradient of the log-probability to follow, like x (Disco's cond_fn: minus the loss gradient,
// scaled), or an undefined tensor for none at this step.
using GuidanceFn = std::function<at::Tensor(const at::Tensor& x, int64_t i, const MeanVariance& out)>;

struct SamplerOptions {
  SamplerKind kind = SamplerKind::kDdim;
  double eta = 0.0;             // DDIM: 0 deterministic, 1 like DDPM
  int plms_order = 2;           // PLMS: 1-4
  bool clip_denoised = false;   // clamp x0 predictions to [-1, 1] (Disco: off)
  int64_t skip_steps = 0;       // start this many steps late, from init_image (zeros when none) noised to that level
  at::Tensor init_image;        // (1 or B, C, H, W) in [-1, 1]
  at::Tensor mask;              // (1 or B, 1, H, W) in [0, 1]: 1 generated and guided, 0 kept from init_image
};

// What one step produced.
struct SamplerStep {
  int64_t index = 0;        // the diffusion step i that was taken (counts down to 0)
  at::Tensor sample;        // x_{i-1} (the final image after index 0)
  at::Tensor pred_xstart;   // the model's x0 prediction at i, without the guidance (what Disco shows)
};

class DiffusionSampler {
 public:
  // `noise` (B, C, H, W): x_T, or the noise added to init_image. Draws later noise from `generator` (CPU or
  // the device's). Bad options (skip_steps out of range, mask or init of the wrong shape, mask without an
  // init image): an Error naming the option.
  DiffusionSampler(const GaussianDiffusion& diffusion, ModelFn model, SamplerOptions options, const at::Tensor& noise,
                   at::Generator generator);

  bool done() const { return next_ < 0; }
  int64_t total_steps() const { return total_; }  // diffusion steps less skip_steps
  int64_t steps_taken() const { return total_ - 1 - next_; }
  int64_t next_index() const { return next_; }    // the diffusion step the next call takes; -1 when done
  const at::Tensor& current() const { return x_; }
  SamplerStep step(const GuidanceFn& guidance = {});
  // Inpainting from the next step on: `mask` (1 or B, 1, H, W), 1 generated, 0 kept from `init_image`
  // (1 or B, C, H, W) in [-1, 1] noised to each step's level; an undefined mask turns it off. Checked as in
  // the constructor.
  void set_inpainting(const at::Tensor& init_image, const at::Tensor& mask);

 private:
  struct Evaluation {
    at::Tensor eps;                 // from the guided x0
    MeanVariance guided, original;  // detached
  };
  Evaluation evaluate(const at::Tensor& x, int64_t i, const GuidanceFn& guidance);
  at::Tensor randn_like(const at::Tensor& x);
  at::Tensor keep_known(const at::Tensor& sample, int64_t level);  // the mask's 0 region from init_image

  const GaussianDiffusion& diffusion_;
  ModelFn model_;
  SamplerOptions options_;
  at::Generator generator_;
  at::Tensor x_;
  int64_t total_ = 0, next_ = 0;
  std::deque<at::Tensor> old_eps_;  // PLMS history
};

}  // namespace clipguide::generators::diffusion
