// Gradient hooks (see hooks.h): mask checks and resizing, the built-in hooks, and HookSet, which registers
// the image hooks as a tensor hook on an alias of the rendered image and rewrites parameter gradients.
// Shapes: B images, H x W pixels.
#include "guidance/hooks.h"

#include "core/error.h"

#include <ATen/ops/upsample_bilinear2d.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace clipguide::guidance {
namespace {

at::Tensor run_hooks(const std::vector<std::pair<std::string, GradientHook>>& hooks, at::Tensor grad,
                     const HookContext& context) {
  for (const auto& [name, hook] : hooks) {
    at::Tensor out = hook(grad, context);
    if (!out.defined() || !out.sizes().equals(grad.sizes())) {
      throw Error("gradient hook '" + name + "' on " + context.name + " returned " +
                  (out.defined() ? shape_str(out.sizes()) : std::string("an undefined tensor")) + ", expected " +
                  shape_str(grad.sizes()));
    }
    grad = out;
  }
  return grad;
}

}  // namespace

void check_mask(const at::Tensor& mask, const std::string& what) {
  if (!mask.defined()) throw Error(what + ": the mask is undefined");
  const bool plain = mask.dim() == 2;
  const bool batched = mask.dim() == 4 && mask.size(0) == 1 && mask.size(1) == 1;
  if (!plain && !batched) {
    throw Error(what + ": a mask must be (H, W) or (1, 1, H, W); got " + shape_str(mask.sizes()));
  }
  if (mask.numel() == 0) throw Error(what + ": the mask is empty, " + shape_str(mask.sizes()));
  if (!at::isFloatingType(mask.scalar_type()) && mask.scalar_type() != at::kBool) {
    throw Error(what + ": a mask must be floating point or bool with values in [0, 1]");
  }
  at::NoGradGuard no_grad;
  auto m = mask.to(at::kFloat);
  const double lo = m.min().item<double>(), hi = m.max().item<double>();
  if (!(lo >= 0.0 && hi <= 1.0)) {
    throw Error(what + ": mask values must lie in [0, 1]; got [" + std::to_string(lo) + ", " + std::to_string(hi) +
                "]");
  }
}

at::Tensor resize_mask(const at::Tensor& mask, int64_t height, int64_t width, const at::TensorOptions& options) {
  check_mask(mask, "mask");
  return detail::resize_mask_unchecked(mask, height, width, options);
}

at::Tensor detail::resize_mask_unchecked(const at::Tensor& mask, int64_t height, int64_t width,
                                         const at::TensorOptions& options) {
  at::NoGradGuard no_grad;
  at::Tensor m = mask.detach().to(options.device(), options.dtype().toScalarType());  // (H', W') or (1, 1, H', W')
  if (m.dim() == 2) m = m.view({1, 1, m.size(0), m.size(1)});                          // (1, 1, H', W')
  if (m.size(2) != height || m.size(3) != width) {
    m = at::upsample_bilinear2d(m, {height, width}, /*align_corners=*/false).clamp(0.0, 1.0);  // (1, 1, H, W)
  }
  return m.contiguous();
}

at::Tensor masked_composite(const at::Tensor& image, const at::Tensor& mask) {
  return image * mask + image.detach() * (1 - mask);  // (B, 3, H, W)
}

GradientHook freeze_region_hook(const at::Tensor& mask) {
  check_mask(mask, "freeze_region");
  at::Tensor source = mask.detach().clone();
  return [source](const at::Tensor& grad, const HookContext& context) {
    if (grad.dim() != 4) {
      throw Error("freeze_region: expected a (B, C, H, W) gradient on " + context.name + ", got " +
                  shape_str(grad.sizes()));
    }
    at::Tensor keep = 1 - detail::resize_mask_unchecked(source, grad.size(2), grad.size(3), grad.options());  // (1, 1, H, W)
    return grad * keep;
  };
}

GradientHook clip_norm_hook(double max_norm) {
  if (!(max_norm > 0.0) || !std::isfinite(max_norm)) {
    throw Error("clip_grad_norm: max_norm must be positive and finite, got " + std::to_string(max_norm));
  }
  return [max_norm](const at::Tensor& grad, const HookContext&) {
    // Scale by min(1, max / norm) as a tensor op: no host synchronisation on GPU.
    at::Tensor norm = grad.detach().to(at::kDouble).norm();
    at::Tensor scale = (max_norm / (norm + 1e-12)).clamp_max(1.0).to(grad.scalar_type());
    return grad * scale;
  };
}

GradientHook observer_hook(std::function<void(const at::Tensor& grad, const HookContext& context)> observe) {
  return [observe = std::move(observe)](const at::Tensor& grad, const HookContext& context) {
    observe(grad, context);
    return grad;
  };
}

void HookSet::add(HookTarget target, const std::string& name, GradientHook hook) {
  if (!hook) throw Error("HookSet::add: hook '" + name + "' is empty");
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& h : hooks_) {
    if (h.target == target && h.name == name) {
      h.hook = std::move(hook);
      return;
    }
  }
  hooks_.push_back({target, name, std::move(hook)});
}

bool HookSet::remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto before = hooks_.size();
  hooks_.erase(std::remove_if(hooks_.begin(), hooks_.end(), [&](const Named& h) { return h.name == name; }),
               hooks_.end());
  return hooks_.size() != before;
}

void HookSet::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  hooks_.clear();
}

std::vector<std::string> HookSet::names(HookTarget target) const {
  std::vector<std::string> out;
  for (const auto& h : snapshot(target)) out.push_back(h.name);
  return out;
}

void HookSet::freeze_region(const at::Tensor& mask, const std::string& name) {
  add(HookTarget::kImage, name, freeze_region_hook(mask));
}

void HookSet::clip_grad_norm(double max_norm, HookTarget target, const std::string& name) {
  add(target, name, clip_norm_hook(max_norm));
}

std::vector<HookSet::Named> HookSet::snapshot(HookTarget target) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<Named> out;
  for (const auto& h : hooks_) {
    if (h.target == target) out.push_back(h);
  }
  return out;
}

at::Tensor HookSet::attach_to_image(const at::Tensor& image, int64_t step) const {
  auto named = snapshot(HookTarget::kImage);
  if (named.empty() || !image.requires_grad()) return image;
  std::vector<std::pair<std::string, GradientHook>> hooks;
  for (auto& h : named) hooks.emplace_back(h.name, std::move(h.hook));
  // A fresh alias per call: the hook lives on this step's graph only, never on the caller's tensor.
  at::Tensor alias = image.view_as(image);  // (B, 3, H, W)
  alias.register_hook([hooks = std::move(hooks), step](const at::Tensor& grad) {
    return run_hooks(hooks, grad, HookContext{step, "image"});
  });
  return alias;
}

void HookSet::apply_to_parameters(const std::vector<at::Tensor>& parameters, int64_t step) const {
  auto named = snapshot(HookTarget::kParameters);
  if (named.empty()) return;
  std::vector<std::pair<std::string, GradientHook>> hooks;
  for (auto& h : named) hooks.emplace_back(h.name, std::move(h.hook));
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters.size(); ++i) {
    at::Tensor p = parameters[i];
    if (!p.grad().defined()) continue;
    at::Tensor g = run_hooks(hooks, p.grad(), HookContext{step, "parameter " + std::to_string(i)});
    p.mutable_grad() = g;
  }
}

}  // namespace clipguide::guidance
