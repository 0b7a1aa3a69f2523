// Autograd building blocks shared by guidance and generators: straight-through replacement and
// VQGAN+CLIP's clamp-with-gradient. ref: nerdyrodent/VQGAN-CLIP generate.py (ReplaceGrad, ClampWithGrad).
#pragma once

#include <ATen/core/Tensor.h>

namespace clipguide {

// Forward: x_forward. Backward: the incoming gradient goes to x_backward (summed to its shape), none to
// x_forward. The straight-through estimator: replace_grad(quantised, continuous).
at::Tensor replace_grad(const at::Tensor& x_forward, const at::Tensor& x_backward);

// Forward: x.clamp(min, max). Backward: the gradient passes where following it (a descent step,
// x - lr * grad) would not push x further outside [min, max]; it is zeroed where it would, exactly
// VQGAN+CLIP's rule grad * (grad * (x - clamp(x)) >= 0).
at::Tensor clamp_with_grad(const at::Tensor& x, double min, double max);

}  // namespace clipguide
