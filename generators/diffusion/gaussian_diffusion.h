// Gaussian diffusion as guided_diffusion defines it: beta schedules, timestep respacing, q(x_t | x_0), the
// model's p(x_{t-1} | x_t) with eps or x0 prediction and fixed or learned-range variance, and the score
// conditioning a guidance gradient applies. Index i counts the (respaced) steps, 0 the cleanest; the model sees
// model_timestep(i). Coefficients are computed in double and applied in float, as guided_diffusion does.
// ref: guided-diffusion-sdk 1.0.0 guided_diffusion/gaussian_diffusion.py, respace.py
// Shapes: x (B, C, H, W); the model's output (B, C or 2C, H, W).
#pragma once

#include "generators/diffusion/config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace clipguide::generators::diffusion {

// get_named_beta_schedule: linear (scaled to the step count) or cosine (Nichol & Dhariwal).
std::vector<double> beta_schedule(BetaSchedule schedule, int64_t steps);

// space_timesteps: which of `num_timesteps` steps a respacing keeps, ascending. "" keeps all; "250" or
// "25,25,50" take that many evenly from equal sections; "ddim50" the DDIM paper's integer stride. A string it
// cannot use (not numbers, a section asked for more steps than it has, no stride giving exactly N): an Error
// quoting it.
std::vector<int64_t> space_timesteps(int64_t num_timesteps, const std::string& respacing);

// p(x_{t-1} | x_t) from one model output: guided_diffusion's p_mean_variance result.
struct MeanVariance {
  at::Tensor mean, variance, log_variance, pred_xstart;  // each like x; variance may be broadcast
};

class GaussianDiffusion {
 public:
  // The process of `config` respaced to `respacing` (config.timestep_respacing when empty).
  explicit GaussianDiffusion(const DiffusionConfig& config, const std::string& respacing = "");

  int64_t num_timesteps() const { return static_cast<int64_t>(betas_.size()); }
  // What the model is given at step i, as a (batch) float tensor on `device`: the original step it stands
  // for, scaled to [0, 1000) with rescale_timesteps.
  at::Tensor model_timesteps(int64_t i, int64_t batch, c10::Device device) const;
  // Disco's blend factor at step i, sqrt(1 - alphā_i): x_in = x0 * fac + x * (1 - fac).
  double sqrt_one_minus_alpha_bar(int64_t i) const;
  double alpha_bar(int64_t i) const { return alphas_cumprod_.at(i); }
  double alpha_bar_prev(int64_t i) const { return alphas_cumprod_prev_.at(i); }
  const std::vector<int64_t>& timestep_map() const { return timestep_map_; }
  const DiffusionConfig& config() const { return config_; }

  // x_t from x_0 and noise at step i.
  at::Tensor q_sample(const at::Tensor& x_start, int64_t i, const at::Tensor& noise) const;
  // The mean, variance and x0 prediction from the model's output at step i (clip_denoised clamps x0 to
  // [-1, 1]). Differentiable in model_output and x. An output of the wrong shape: an Error.
  MeanVariance p_mean_variance(const at::Tensor& model_output, const at::Tensor& x, int64_t i, bool clip_denoised) const;
  at::Tensor predict_xstart_from_eps(const at::Tensor& x, int64_t i, const at::Tensor& eps) const;
  at::Tensor predict_eps_from_xstart(const at::Tensor& x, int64_t i, const at::Tensor& pred_xstart) const;
  // q(x_{t-1} | x_t, x_0)'s mean.
  at::Tensor posterior_mean(const at::Tensor& x_start, const at::Tensor& x, int64_t i) const;
  // condition_score (Song et al.): `out` with eps moved by -sqrt(1 - alphā) · grad and x0, mean recomputed.
  MeanVariance condition_score(const MeanVariance& out, const at::Tensor& x, int64_t i, const at::Tensor& grad) const;
  // condition_mean (Sohl-Dickstein et al.): mean + variance · grad.
  at::Tensor condition_mean(const MeanVariance& out, const at::Tensor& grad) const;

 private:
  DiffusionConfig config_;
  std::vector<int64_t> timestep_map_;  // respaced index -> original step
  int64_t original_steps_;
  std::vector<double> betas_, alphas_cumprod_, alphas_cumprod_prev_, sqrt_recip_alphas_cumprod_,
      sqrt_recipm1_alphas_cumprod_, posterior_variance_, posterior_log_variance_clipped_, posterior_mean_coef1_,
      posterior_mean_coef2_;
};

}  // namespace clipguide::generators::diffusion
