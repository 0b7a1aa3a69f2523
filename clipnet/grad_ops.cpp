// Custom autograd functions (see grad_ops.h).
#include "clipnet/grad_ops.h"

#include <torch/csrc/autograd/custom_function.h>

namespace clipguide {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ReplaceGrad : public torch::autograd::Function<ReplaceGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_forward, const at::Tensor& x_backward) {
    ctx->saved_data["shape"] = x_backward.sizes().vec();
    return x_forward.view_as(x_forward);  // a new tensor node, so autograd routes through backward()
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto shape = ctx->saved_data["shape"].toIntVector();
    return {at::Tensor(), grad_outputs[0].sum_to_size(shape)};
  }
};

struct ClampWithGrad : public torch::autograd::Function<ClampWithGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double min, double max) {
    ctx->saved_data["min"] = min;
    ctx->saved_data["max"] = max;
    ctx->save_for_backward({x});
    return x.clamp(min, max);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor x = ctx->get_saved_variables()[0];
    double min = ctx->saved_data["min"].toDouble(), max = ctx->saved_data["max"].toDouble();
    at::Tensor keep = (grad * (x - x.clamp(min, max))).ge(0);
    return {grad * keep, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor replace_grad(const at::Tensor& x_forward, const at::Tensor& x_backward) {
  return ReplaceGrad::apply(x_forward, x_backward);
}

at::Tensor clamp_with_grad(const at::Tensor& x, double min, double max) { return ClampWithGrad::apply(x, min, max); }

}  // namespace clipguide
