// DDIM, PLMS and DDPM steps with guidance (see sampler.h).
// ref: guided-diffusion-sdk 1.0.0 guided_diffusion/gaussian_diffusion.py
#include "generators/diffusion/sampler.h"

#include "core/error.h"

#include <ATen/ops/exp.h>
#include <ATen/ops/randn.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace clipguide::generators::diffusion {

SamplerKind parse_sampler_kind(const std::string& name) {
  if (name == "ddim") return SamplerKind::kDdim;
  if (name == "plms") return SamplerKind::kPlms;
  if (name == "ddpm") return SamplerKind::kDdpm;
  throw Error("unknown sampler '" + name + "' (expected ddim, plms or ddpm)");
}

std::string to_string(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::kDdim: return "ddim";
    case SamplerKind::kPlms: return "plms";
    case SamplerKind::kDdpm: return "ddpm";
  }
  return "?";
}

namespace {
void check_image_like(const at::Tensor& t, const at::Tensor& x, int64_t channels, const std::string& name) {
  if (t.dim() != 4 || (t.size(0) != 1 && t.size(0) != x.size(0)) || t.size(1) != channels ||
      t.size(2) != x.size(2) || t.size(3) != x.size(3)) {
    throw Error("diffusion sampler: " + name + " is " + shape_str(t.sizes()) + ", expected (1 or " +
                std::to_string(x.size(0)) + ", " + std::to_string(channels) + ", " + std::to_string(x.size(2)) + ", " +
                std::to_string(x.size(3)) + ")");
  }
}
}  // namespace

DiffusionSampler::DiffusionSampler(const GaussianDiffusion& diffusion, ModelFn model, SamplerOptions options,
                                   const at::Tensor& noise, at::Generator generator)
    : diffusion_(diffusion), model_(std::move(model)), options_(std::move(options)), generator_(std::move(generator)) {
  const int64_t n = diffusion_.num_timesteps();
  if (noise.dim() != 4) throw Error("diffusion sampler: the noise is " + shape_str(noise.sizes()) + ", expected (B, C, H, W)");
  if (options_.skip_steps < 0 || options_.skip_steps >= n)
    throw Error("diffusion sampler: skip_steps " + std::to_string(options_.skip_steps) + " outside [0, " +
                std::to_string(n) + ") for " + std::to_string(n) + " steps");
  if (options_.kind == SamplerKind::kPlms && (options_.plms_order < 1 || options_.plms_order > 4))
    throw Error("diffusion sampler: PLMS order " + std::to_string(options_.plms_order) + " outside 1-4");
  if (!(options_.eta >= 0) || !std::isfinite(options_.eta))
    throw Error("diffusion sampler: eta " + std::to_string(options_.eta) + " must be finite and >= 0");
  x_ = noise.to(at::kFloat);
  set_inpainting(options_.init_image, options_.mask);
  total_ = n - options_.skip_steps;
  next_ = total_ - 1;
  if (options_.skip_steps > 0 && !options_.init_image.defined()) options_.init_image = at::zeros_like(x_);
  if (options_.init_image.defined()) x_ = diffusion_.q_sample(options_.init_image, next_, x_);
}

void DiffusionSampler::set_inpainting(const at::Tensor& init_image, const at::Tensor& mask) {
  if (mask.defined() && !init_image.defined())
    throw Error("diffusion sampler: a mask needs an init image (the part it keeps)");
  at::Tensor init, m;
  if (init_image.defined()) {
    check_image_like(init_image, x_, x_.size(1), "the init image");
    init = init_image.to(x_.device(), at::kFloat);
  }
  if (mask.defined()) {
    check_image_like(mask, x_, 1, "the mask");
    m = mask.to(x_.device(), at::kFloat).clamp(0, 1);
  }
  options_.init_image = init;
  options_.mask = m;
}

at::Tensor DiffusionSampler::randn_like(const at::Tensor& x) {
  // Drawn on the CPU and moved: the same numbers on every device.
  return at::randn(x.sizes(), generator_, at::TensorOptions().dtype(at::kFloat)).to(x.device());
}

DiffusionSampler::Evaluation DiffusionSampler::evaluate(const at::Tensor& x_in, int64_t i, const GuidanceFn& guidance) {
  Evaluation e;
  at::Tensor grad;
  {
    c10::AutoGradMode grad_mode(static_cast<bool>(guidance));
    const auto x = guidance ? x_in.detach().requires_grad_() : x_in.detach();
    const auto out = diffusion_.p_mean_variance(model_(x, i), x, i, options_.clip_denoised);
    if (guidance) {
      grad = guidance(x, i, out);
      if (grad.defined()) {
        if (!grad.sizes().equals(x.sizes()))
          throw Error("diffusion sampler: the guidance gave " + shape_str(grad.sizes()) + ", expected " + shape_str(x.sizes()));
        grad = grad.detach().to(at::kFloat);
        if (options_.mask.defined()) grad = grad * options_.mask;  // guided only where generated
      }
    }
    e.original = {out.mean.detach(), out.variance.detach(), out.log_variance.detach(), out.pred_xstart.detach()};
  }
  const auto x = x_in.detach();
  e.guided = grad.defined() && options_.kind != SamplerKind::kDdpm ? diffusion_.condition_score(e.original, x, i, grad)
                                                                   : e.original;
  if (grad.defined() && options_.kind == SamplerKind::kDdpm) e.guided.mean = diffusion_.condition_mean(e.original, grad);
  e.eps = diffusion_.predict_eps_from_xstart(x, i, e.guided.pred_xstart);
  return e;
}

at::Tensor DiffusionSampler::keep_known(const at::Tensor& sample, int64_t level) {
  if (!options_.mask.defined()) return sample;
  const auto known = level >= 0 ? diffusion_.q_sample(options_.init_image, level, randn_like(sample)) : options_.init_image;
  return options_.mask * sample + (1 - options_.mask) * known;
}

SamplerStep DiffusionSampler::step(const GuidanceFn& guidance) {
  if (done()) throw Error("diffusion sampler: every step has been taken");
  c10::NoGradGuard no_grad;
  const int64_t i = next_;
  const float alpha_bar = static_cast<float>(diffusion_.alpha_bar(i));
  const float alpha_bar_prev = static_cast<float>(diffusion_.alpha_bar_prev(i));
  auto e = evaluate(x_, i, guidance);
  at::Tensor sample;
  switch (options_.kind) {
    case SamplerKind::kDdim: {
      const float sigma = static_cast<float>(options_.eta) * std::sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) *
                          std::sqrt(1 - alpha_bar / alpha_bar_prev);
      const auto noise = randn_like(x_);
      sample = e.guided.pred_xstart * static_cast<double>(std::sqrt(alpha_bar_prev)) +
               e.eps * static_cast<double>(std::sqrt(1 - alpha_bar_prev - sigma * sigma));
      if (i != 0) sample = sample + noise * static_cast<double>(sigma);
      break;
    }
    case SamplerKind::kDdpm: {
      const auto noise = randn_like(x_);
      sample = e.guided.mean;
      if (i != 0) sample = sample + at::exp(0.5 * e.original.log_variance) * noise;
      break;
    }
    case SamplerKind::kPlms: {
      const double root_prev = std::sqrt(alpha_bar_prev), root_rest = std::sqrt(1 - alpha_bar_prev);
      at::Tensor eps_prime;
      if (options_.plms_order > 1 && old_eps_.empty()) {
        // The first step: a pseudo improved Euler step, the model evaluated again at the predicted x_{i-1}.
        old_eps_.push_back(e.eps);
        eps_prime = e.eps;
        if (i > 0) {
          const auto mean_pred = e.guided.pred_xstart * root_prev + e.eps * root_rest;
          eps_prime = (e.eps + evaluate(mean_pred, i - 1, guidance).eps) / 2;
        }
      } else {
        old_eps_.push_back(e.eps);
        const auto& h = old_eps_;
        const size_t n = h.size();
        switch (std::min<size_t>(options_.plms_order, n)) {
          case 1: eps_prime = h[n - 1]; break;
          case 2: eps_prime = (3 * h[n - 1] - h[n - 2]) / 2; break;
          case 3: eps_prime = (23 * h[n - 1] - 16 * h[n - 2] + 5 * h[n - 3]) / 12; break;
          default: eps_prime = (55 * h[n - 1] - 59 * h[n - 2] + 37 * h[n - 3] - 9 * h[n - 4]) / 24; break;
        }
      }
      if (static_cast<int64_t>(old_eps_.size()) >= options_.plms_order) old_eps_.pop_front();
      const auto pred_prime = diffusion_.predict_xstart_from_eps(x_, i, eps_prime);
      sample = i != 0 ? pred_prime * root_prev + eps_prime * root_rest : e.guided.pred_xstart;
      break;
    }
  }
  x_ = keep_known(sample, i - 1);
  --next_;
  auto shown = e.original.pred_xstart;
  if (options_.mask.defined()) shown = options_.mask * shown + (1 - options_.mask) * options_.init_image;
  return {i, x_, shown};
}

}  // namespace clipguide::generators::diffusion
