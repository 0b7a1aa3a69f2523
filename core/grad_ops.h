// Autograd building blocks: straight-through replacement and VQGAN+CLIP's clamp-with-gradient (guidance,
// generators; ref: nerdyrodent/VQGAN-CLIP generate.py ReplaceGrad, ClampWithGrad), and gradient
// checkpointing (training; LibTorch's C++ API has no torch.utils.checkpoint).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace clipguide {

// Forward: x_forward. Backward: the incoming gradient goes to x_backward (summed to its shape), none to
// x_forward. The straight-through estimator: replace_grad(quantised, continuous).
at::Tensor replace_grad(const at::Tensor& x_forward, const at::Tensor& x_backward);

// Forward: x.clamp(min, max). Backward: the gradient passes where following it (a descent step,
// x - lr * grad) would not push x further outside [min, max]; it is zeroed where it would, exactly
// VQGAN+CLIP's rule grad * (grad * (x - clamp(x)) >= 0).
at::Tensor clamp_with_grad(const at::Tensor& x, double min, double max);

// Gradient checkpointing: y = fn(x), computed without keeping fn's intermediate tensors for backward;
// backward runs fn again with gradients enabled and back-propagates through that. The recomputation sees
// the forward's CPU and CUDA autocast states and CPU random state (dropout would draw the same numbers), and
// `buffers` are put back afterwards, so BatchNorm running statistics are updated once per forward, as
// without checkpointing. `parameters`: every tensor requiring grad that fn uses besides x (a module's
// parameters()); their gradients flow through this node. Without grad mode, or when nothing requires
// grad, it is plain fn(x). ref: pytorch/pytorch@v2.4.0 torch/utils/checkpoint.py (CheckpointFunction)
at::Tensor checkpoint(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x,
                      const std::vector<at::Tensor>& parameters, const std::vector<at::Tensor>& buffers = {});

}  // namespace clipguide
