// Custom autograd functions (see grad_ops.h).
#include "core/grad_ops.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>

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

// What the recomputation needs besides the saved input: held by the node until backward.
struct CheckpointState : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
  std::vector<at::Tensor> parameters;   // the Function's inputs after x
  std::vector<at::Tensor> buffers;      // restored after recomputing
  bool autocast[2] = {false, false};     // autocast state of the forward, CPU and CUDA
  at::ScalarType autocast_dtype[2] = {at::kBFloat16, at::kHalf};
  at::Tensor rng_state;                 // CPU generator state before the forward
};

at::Tensor cpu_rng_state() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const at::Tensor& state) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// The device types whose autocast state a checkpoint keeps.
constexpr c10::DeviceType kAutocastDevices[2] = {at::kCPU, at::kCUDA};

// Sets autocast on `device` as given for its lifetime (the backward pass runs outside the forward's autocast
// scope).
class AutocastState {
 public:
  AutocastState(c10::DeviceType device, bool enabled, at::ScalarType dtype)
      : device_(device),
        prev_enabled_(at::autocast::is_autocast_enabled(device)),
        prev_dtype_(at::autocast::get_autocast_dtype(device)) {
    at::autocast::set_autocast_enabled(device, enabled);
    at::autocast::set_autocast_dtype(device, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastState() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_, prev_dtype_);
  }
  AutocastState(const AutocastState&) = delete;
  AutocastState& operator=(const AutocastState&) = delete;

 private:
  c10::DeviceType device_;
  bool prev_enabled_;
  at::ScalarType prev_dtype_;
};

// Inputs: x, then the parameters (one autograd edge each), then the state (not a tensor: no edge).
struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList /*parameters*/,
                            const c10::intrusive_ptr<CheckpointState>& state) {
    // Runs without grad mode (Function::apply turns it off): nothing of fn is kept but its output.
    ctx->save_for_backward({x});
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    return state->fn(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto state = c10::static_intrusive_pointer_cast<CheckpointState>(ctx->saved_data["state"].toCapsule());
    const std::vector<at::Tensor>& parameters = state->parameters;
    const at::Tensor x = ctx->get_saved_variables()[0];
    at::Tensor input = x.detach().requires_grad_(ctx->needs_input_grad(0));
    std::vector<at::Tensor> kept;  // (buffers) as the forward left them
    {
      at::NoGradGuard no_grad;
      for (const auto& b : state->buffers) kept.push_back(b.clone());
    }
    at::Tensor y;
    {
      const at::Tensor rng_after = cpu_rng_state();
      set_cpu_rng_state(state->rng_state);
      at::AutoGradMode grad_mode(true);
      AutocastState cpu(kAutocastDevices[0], state->autocast[0], state->autocast_dtype[0]);
      AutocastState cuda(kAutocastDevices[1], state->autocast[1], state->autocast_dtype[1]);
      y = state->fn(input);
      set_cpu_rng_state(rng_after);
    }
    // Buffers go back after the gradient: the recomputed graph saved them (BatchNorm's running statistics)
    // and checks their versions.
    auto restore_buffers = [&] {
      at::NoGradGuard no_grad;
      for (size_t i = 0; i < kept.size(); ++i) state->buffers[i].copy_(kept[i]);
    };
    // Gradients for x and the parameters that need them, in input order; none for the state.
    variable_list inputs;
    std::vector<size_t> slot;  // position of each entry of inputs among the Function's inputs
    if (input.requires_grad()) inputs.push_back(input), slot.push_back(0);
    for (size_t i = 0; i < parameters.size(); ++i)
      if (ctx->needs_input_grad(1 + i)) inputs.push_back(parameters[i]), slot.push_back(1 + i);
    variable_list grads(parameters.size() + 2);
    if (inputs.empty() || !y.requires_grad()) {
      restore_buffers();
      return grads;
    }
    variable_list computed = torch::autograd::grad({y}, inputs, {grad_outputs[0]}, /*retain_graph=*/false,
                                                   /*create_graph=*/false, /*allow_unused=*/true);
    restore_buffers();
    for (size_t k = 0; k < computed.size(); ++k) grads[slot[k]] = computed[k];
    return grads;
  }
};

}  // namespace

at::Tensor checkpoint(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x,
                      const std::vector<at::Tensor>& parameters, const std::vector<at::Tensor>& buffers) {
  bool needs_grad = x.requires_grad();
  for (const auto& p : parameters) needs_grad = needs_grad || p.requires_grad();
  if (!at::GradMode::is_enabled() || !needs_grad) return fn(x);
  auto state = c10::make_intrusive<CheckpointState>();
  state->fn = std::move(fn);
  state->parameters = parameters;
  state->buffers = buffers;
  for (int d = 0; d < 2; ++d) {
    state->autocast[d] = at::autocast::is_autocast_enabled(kAutocastDevices[d]);
    state->autocast_dtype[d] = at::autocast::get_autocast_dtype(kAutocastDevices[d]);
  }
  state->rng_state = cpu_rng_state();
  return Checkpoint::apply(x, at::TensorList(state->parameters), state);
}

at::Tensor replace_grad(const at::Tensor& x_forward, const at::Tensor& x_backward) {
  return ReplaceGrad::apply(x_forward, x_backward);
}

at::Tensor clamp_with_grad(const at::Tensor& x, double min, double max) { return ClampWithGrad::apply(x, min, max); }

}  // namespace clipguide
