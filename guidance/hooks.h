// The gradient-hook API: functions that observe or change gradients during a guidance step, on the
// rendered image (before they flow back into the generator) and on the generator's parameters (after
// backward, before the optimiser step). Built-ins: zeroing a region's gradient, gradient-norm clipping,
// observers, and the mask helpers behind Guide::mask_prompt (a prompt's loss computed on a masked composite
// of the image). An exact region freeze is GuideLoop::freeze_region.
// Shapes: B images, H x W pixels.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace clipguide::guidance {

// What a hook is told about the gradient it receives.
struct HookContext {
  int64_t step = 0;   // guidance step the gradient belongs to
  std::string name;   // what the gradient is of: "image", or "parameter <i>" for generator parameters
};

// Receives a gradient and returns the gradient to use instead (return `grad` itself to only observe).
// The result must have grad's shape. Hooks run in the order they were added.
using GradientHook = std::function<at::Tensor(const at::Tensor& grad, const HookContext& context)>;

// Where a hook applies.
enum class HookTarget {
  kImage,       // d loss / d image, (B, 3, H, W): changes what reaches the generator
  kParameters,  // each generator parameter's .grad() after backward, before the optimiser step
};

// --- masks --------------------------------------------------------------------------------------
// A mask is (H', W') or (1, 1, H', W') with values in [0, 1]; 1 marks the region. Throws clipguide::Error
// naming `what` and the shape or value range when it is not.
void check_mask(const at::Tensor& mask, const std::string& what);

// The mask resized (bilinear) to (1, 1, H, W) with `options`' dtype and device. Validates as check_mask.
at::Tensor resize_mask(const at::Tensor& mask, int64_t height, int64_t width, const at::TensorOptions& options);

namespace detail {
// resize_mask without the checks (and their host synchronisation), for masks checked when they were set.
at::Tensor resize_mask_unchecked(const at::Tensor& mask, int64_t height, int64_t width,
                                 const at::TensorOptions& options);
}  // namespace detail

// image * mask + image.detach() * (1 - mask): the same values as `image`, but gradients reach only the
// masked pixels (scaled by the mask). mask is (1, 1, H, W) as resize_mask gives it; image (B, 3, H, W).
at::Tensor masked_composite(const at::Tensor& image, const at::Tensor& mask);

// --- built-in hooks -----------------------------------------------------------------------------
// Zeroes the gradient where the mask is 1 (scaled by 1 - mask between). For image gradients (B, 3, H, W);
// the mask is resized to the gradient's size. Only the gradient: Adam's momentum and generators whose
// parameters are not per-pixel (VQGAN, Fourier) still move the region. GuideLoop::freeze_region is exact.
GradientHook freeze_region_hook(const at::Tensor& mask);

// Rescales the gradient so its L2 norm is at most max_norm (per tensor). max_norm > 0, else Error.
GradientHook clip_norm_hook(double max_norm);

// Calls `observe` and passes the gradient on unchanged (for displays and logging).
GradientHook observer_hook(std::function<void(const at::Tensor& grad, const HookContext& context)> observe);

// Named hooks on the image and on parameters. Safe to change from another thread while a loop runs: each
// step works on a copy of the list taken when it starts using it.
class HookSet {
 public:
  // Adds (or replaces, when `name` exists for that target) a hook.
  void add(HookTarget target, const std::string& name, GradientHook hook);
  // Removes every hook called `name`; returns whether there was one.
  bool remove(const std::string& name);
  void clear();
  std::vector<std::string> names(HookTarget target) const;

  // Conveniences for the built-ins.
  void freeze_region(const at::Tensor& mask, const std::string& name = "freeze_region");
  void clip_grad_norm(double max_norm, HookTarget target = HookTarget::kParameters,
                      const std::string& name = "clip_grad_norm");

  // (B, 3, H, W) → an alias of `image` whose gradient passes through the image hooks (returned as is
  // when there are none or it does not require grad). Compute the loss from the alias.
  at::Tensor attach_to_image(const at::Tensor& image, int64_t step) const;
  // Replaces each parameter's defined .grad() with the parameter hooks' result.
  void apply_to_parameters(const std::vector<at::Tensor>& parameters, int64_t step) const;

 private:
  struct Named {
    HookTarget target;
    std::string name;
    GradientHook hook;
  };
  std::vector<Named> snapshot(HookTarget target) const;

  mutable std::mutex mutex_;
  std::vector<Named> hooks_;
};

}  // namespace clipguide::guidance
