// guided_diffusion's GaussianDiffusion and SpacedDiffusion (see gaussian_diffusion.h).
// ref: guided-diffusion-sdk 1.0.0 guided_diffusion/gaussian_diffusion.py, respace.py
#include "generators/diffusion/gaussian_diffusion.h"

#include "core/error.h"

#include <ATen/ops/clamp.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/full.h>
#include <ATen/ops/split.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace clipguide::generators::diffusion {

std::vector<double> beta_schedule(BetaSchedule schedule, int64_t steps) {
  if (steps <= 0) throw Error("diffusion: the step count must be positive, got " + std::to_string(steps));
  std::vector<double> betas(steps);
  if (schedule == BetaSchedule::kLinear) {
    const double scale = 1000.0 / static_cast<double>(steps);
    const double start = scale * 0.0001, end = scale * 0.02;
    const double step = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0;
    for (int64_t i = 0; i < steps; ++i) betas[i] = static_cast<double>(i) * step + start;  // np.linspace's arithmetic
    if (steps > 1) betas[steps - 1] = end;
  } else {
    auto alpha_bar = [](double t) {
      const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
      return c * c;
    };
    for (int64_t i = 0; i < steps; ++i) {
      const double t1 = static_cast<double>(i) / static_cast<double>(steps);
      const double t2 = static_cast<double>(i + 1) / static_cast<double>(steps);
      betas[i] = std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999);
    }
  }
  return betas;
}

std::vector<int64_t> space_timesteps(int64_t num_timesteps, const std::string& respacing) {
  auto fail = [&](const std::string& why) {
    throw Error("timestep respacing \"" + respacing + "\" for " + std::to_string(num_timesteps) + " steps: " + why);
  };
  auto parse_count = [&](std::string text) {
    text.erase(0, text.find_first_not_of(" \t"));
    text.erase(text.find_last_not_of(" \t") + 1);
    size_t used = 0;
    int64_t n = 0;
    try {
      n = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (text.empty() || used != text.size() || n <= 0)
      fail("expected positive step counts (\"250\", \"25,25,50\") or \"ddimN\", got \"" + text + "\"");
    return n;
  };
  if (respacing.empty()) {
    std::vector<int64_t> all(num_timesteps);
    for (int64_t i = 0; i < num_timesteps; ++i) all[i] = i;
    return all;
  }
  std::vector<int64_t> steps;
  if (respacing.rfind("ddim", 0) == 0) {
    const int64_t wanted = parse_count(respacing.substr(4));
    for (int64_t stride = 1; stride < std::max<int64_t>(num_timesteps, 2); ++stride) {
      if ((num_timesteps + stride - 1) / stride == wanted) {
        for (int64_t i = 0; i < num_timesteps; i += stride) steps.push_back(i);
        return steps;
      }
    }
    fail("no integer stride gives exactly " + std::to_string(wanted) + " steps");
  }
  std::vector<int64_t> counts;
  std::stringstream in(respacing);
  std::string part;
  while (std::getline(in, part, ',')) counts.push_back(parse_count(part));
  if (counts.empty()) fail("no step counts");
  const auto sections = static_cast<int64_t>(counts.size());
  const int64_t size_per = num_timesteps / sections, extra = num_timesteps % sections;
  std::set<int64_t> taken;
  int64_t start = 0;
  for (int64_t s = 0; s < sections; ++s) {
    const int64_t size = size_per + (s < extra ? 1 : 0);
    if (size < counts[s])
      fail("section " + std::to_string(s + 1) + " has " + std::to_string(size) + " steps, cannot take " +
           std::to_string(counts[s]));
    const double stride = counts[s] <= 1 ? 1.0 : static_cast<double>(size - 1) / static_cast<double>(counts[s] - 1);
    double index = 0;
    for (int64_t k = 0; k < counts[s]; ++k, index += stride)
      taken.insert(start + static_cast<int64_t>(std::nearbyint(index)));  // Python's round: half to even
    start += size;
  }
  return {taken.begin(), taken.end()};
}

// ---------------------------------------------------------------------------------------------------------
GaussianDiffusion::GaussianDiffusion(const DiffusionConfig& config, const std::string& respacing)
    : config_(config), original_steps_(config.diffusion_steps) {
  const auto base = beta_schedule(config.noise_schedule, config.diffusion_steps);
  timestep_map_ = space_timesteps(config.diffusion_steps, respacing.empty() ? config.timestep_respacing : respacing);
  // SpacedDiffusion: the kept steps' alphā, as betas of a shorter process.
  std::vector<bool> keep(base.size(), false);
  for (int64_t i : timestep_map_) keep[i] = true;
  double cumprod = 1, last = 1;
  for (size_t i = 0; i < base.size(); ++i) {
    cumprod *= 1 - base[i];
    if (!keep[i]) continue;
    betas_.push_back(1 - cumprod / last);
    last = cumprod;
  }
  const auto n = betas_.size();
  double running = 1;
  for (size_t i = 0; i < n; ++i) {
    if (!(betas_[i] > 0 && betas_[i] <= 1)) throw Error("diffusion: beta " + std::to_string(betas_[i]) + " outside (0, 1]");
    alphas_cumprod_prev_.push_back(running);
    running *= 1 - betas_[i];
    alphas_cumprod_.push_back(running);
  }
  for (size_t i = 0; i < n; ++i) {
    const double ac = alphas_cumprod_[i], prev = alphas_cumprod_prev_[i], beta = betas_[i];
    sqrt_recip_alphas_cumprod_.push_back(std::sqrt(1 / ac));
    sqrt_recipm1_alphas_cumprod_.push_back(std::sqrt(1 / ac - 1));
    posterior_variance_.push_back(beta * (1 - prev) / (1 - ac));
    posterior_mean_coef1_.push_back(beta * std::sqrt(prev) / (1 - ac));
    posterior_mean_coef2_.push_back((1 - prev) * std::sqrt(1 - beta) / (1 - ac));
  }
  for (size_t i = 0; i < n; ++i)  // log of the variance with the first (zero) entry replaced by the second
    posterior_log_variance_clipped_.push_back(std::log(posterior_variance_[i == 0 && n > 1 ? 1 : i]));
}

at::Tensor GaussianDiffusion::model_timesteps(int64_t i, int64_t batch, c10::Device device) const {
  const auto t = at::full({batch}, static_cast<double>(timestep_map_.at(i)), at::TensorOptions().dtype(at::kFloat).device(device));
  return config_.rescale_timesteps ? t * (1000.0 / static_cast<double>(original_steps_)) : t;
}

double GaussianDiffusion::sqrt_one_minus_alpha_bar(int64_t i) const { return std::sqrt(1 - alphas_cumprod_.at(i)); }

namespace {
// guided_diffusion's _extract_into_tensor: the double coefficient as a float, applied to float tensors.
double as_float(double v) { return static_cast<double>(static_cast<float>(v)); }
}  // namespace

at::Tensor GaussianDiffusion::q_sample(const at::Tensor& x_start, int64_t i, const at::Tensor& noise) const {
  return x_start * as_float(std::sqrt(alphas_cumprod_.at(i))) + noise * as_float(std::sqrt(1 - alphas_cumprod_.at(i)));
}

at::Tensor GaussianDiffusion::predict_xstart_from_eps(const at::Tensor& x, int64_t i, const at::Tensor& eps) const {
  return x * as_float(sqrt_recip_alphas_cumprod_.at(i)) - eps * as_float(sqrt_recipm1_alphas_cumprod_.at(i));
}

at::Tensor GaussianDiffusion::predict_eps_from_xstart(const at::Tensor& x, int64_t i, const at::Tensor& pred_xstart) const {
  return (x * as_float(sqrt_recip_alphas_cumprod_.at(i)) - pred_xstart) / as_float(sqrt_recipm1_alphas_cumprod_.at(i));
}

at::Tensor GaussianDiffusion::posterior_mean(const at::Tensor& x_start, const at::Tensor& x, int64_t i) const {
  return x_start * as_float(posterior_mean_coef1_.at(i)) + x * as_float(posterior_mean_coef2_.at(i));
}

MeanVariance GaussianDiffusion::p_mean_variance(const at::Tensor& model_output, const at::Tensor& x, int64_t i,
                                                bool clip_denoised) const {
  if (i < 0 || i >= num_timesteps())
    throw Error("diffusion: step " + std::to_string(i) + " outside [0, " + std::to_string(num_timesteps()) + ")");
  const int64_t c = x.size(1);
  const bool learned = config_.variance_type == VarianceType::kLearnedRange;
  const int64_t want = learned ? 2 * c : c;
  if (model_output.dim() != 4 || model_output.size(0) != x.size(0) || model_output.size(1) != want ||
      model_output.size(2) != x.size(2) || model_output.size(3) != x.size(3)) {
    throw Error("diffusion: the model gave " + shape_str(model_output.sizes()) + ", expected " + std::to_string(want) +
                " channels like x " + shape_str(x.sizes()) +
                (learned ? " (learn_sigma: eps and the variance)" : " (no learn_sigma)"));
  }
  MeanVariance out;
  at::Tensor prediction = model_output;
  if (learned) {
    const auto parts = model_output.split(c, 1);
    prediction = parts[0];
    const double min_log = as_float(posterior_log_variance_clipped_[i]), max_log = as_float(std::log(betas_[i]));
    const auto frac = (parts[1] + 1) / 2;
    out.log_variance = frac * max_log + (1 - frac) * min_log;
    out.variance = at::exp(out.log_variance);
  } else {
    const bool large = config_.variance_type == VarianceType::kFixedLarge;
    const double variance = large ? (i == 0 && num_timesteps() > 1 ? posterior_variance_[1] : betas_[i]) : posterior_variance_[i];
    const double log_variance = large ? std::log(variance) : posterior_log_variance_clipped_[i];
    out.variance = at::full_like(x, as_float(variance));
    out.log_variance = at::full_like(x, as_float(log_variance));
  }
  out.pred_xstart = config_.mean_type == MeanType::kStartX ? prediction : predict_xstart_from_eps(x, i, prediction);
  if (clip_denoised) out.pred_xstart = out.pred_xstart.clamp(-1, 1);
  out.mean = posterior_mean(out.pred_xstart, x, i);
  return out;
}

MeanVariance GaussianDiffusion::condition_score(const MeanVariance& out, const at::Tensor& x, int64_t i,
                                                const at::Tensor& grad) const {
  // (1 - alphā).sqrt() of a float alphā, as guided_diffusion evaluates it.
  const float sqrt_one_minus = std::sqrt(1.0f - static_cast<float>(alphas_cumprod_.at(i)));
  const auto eps = predict_eps_from_xstart(x, i, out.pred_xstart) - grad * static_cast<double>(sqrt_one_minus);
  MeanVariance conditioned = out;
  conditioned.pred_xstart = predict_xstart_from_eps(x, i, eps);
  conditioned.mean = posterior_mean(conditioned.pred_xstart, x, i);
  return conditioned;
}

at::Tensor GaussianDiffusion::condition_mean(const MeanVariance& out, const at::Tensor& grad) const {
  return out.mean + out.variance * grad;
}

}  // namespace clipguide::generators::diffusion
