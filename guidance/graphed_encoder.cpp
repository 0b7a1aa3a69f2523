// GraphedImageEncoder (see graphed_encoder.h). Capture follows torch.cuda.make_graphed_callables (torch 2.x
// torch/cuda/graphs.py): warm-up iterations on a side stream, then the forward and the backward (autograd
// grad into a static gradient buffer) each captured into a graph sharing one memory pool, replayed through
// an autograd function whose forward copies the input into the static buffer.
// Shapes: N cutouts, S the member's input size, E embedding width.
#include "guidance/graphed_encoder.h"

#include "core/autocast.h"
#include "core/error.h"

#if CLIPGUIDE_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#endif

#include <cstdint>
#include <utility>

namespace clipguide::guidance {

#if CLIPGUIDE_WITH_CUDA

struct GraphedImageEncoder::State {
  at::Tensor input;        // (N, 3, S, S) static input, requires grad
  at::Tensor output;       // (N, E) float, written by the forward graph
  at::Tensor grad_output;  // (N, E) float, read by the backward graph
  at::Tensor grad_input;   // (N, 3, S, S), written by the backward graph
  at::cuda::CUDAGraph forward, backward;
};

namespace {

constexpr int kWarmup = 3;  // make_graphed_callables' num_warmup_iters

at::Tensor encode(clipnet::ClipModel& model, const at::Tensor& pixels, at::ScalarType autocast) {
  clipguide::AutocastGuard guard(c10::kCUDA, autocast);
  return model->encode_image(pixels).to(at::kFloat);  // (N, E)
}

// Replays the captured graphs: forward copies in and replays, backward copies the gradient in and replays.
struct GraphedEncode : public torch::autograd::Function<GraphedEncode> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& pixels, int64_t state_address) {
    auto* state = reinterpret_cast<GraphedImageEncoder::State*>(state_address);
    ctx->saved_data["state"] = state_address;
    state->input.detach().copy_(pixels);
    state->forward.replay();
    return state->output.clone();  // (N, E)
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* state = reinterpret_cast<GraphedImageEncoder::State*>(ctx->saved_data["state"].toInt());
    state->grad_output.copy_(grads[0]);
    state->backward.replay();
    return {state->grad_input.clone(), at::Tensor()};  // (N, 3, S, S); none for the address
  }
};

}  // namespace

bool GraphedImageEncoder::available() { return true; }

at::Tensor GraphedImageEncoder::operator()(const at::Tensor& pixels) {
  if (!pixels.is_cuda()) throw Error("GraphedImageEncoder: pixels must be on a CUDA device");
  if (!state_ || !state_->input.sizes().equals(pixels.sizes())) {
    state_.reset();  // frees the old graphs and pool before the new capture
    auto state = std::make_unique<State>();
    c10::cuda::CUDAGuard device_guard(pixels.device());
    state->input = pixels.detach().clone().contiguous().requires_grad_(true);
    // Autocast's weight-cast cache must not hold tensors made during capture (make_graphed_callables
    // refuses it); frozen weights are not cached anyway, this makes sure.
    const bool cache = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);
    try {
      // Warm-up on a side stream: cuBLAS/cuDNN handles, workspaces and kernel choices before capture.
      c10::cuda::device_synchronize();
      {
        c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool());
        for (int i = 0; i < kWarmup; ++i) {
          at::Tensor out = encode(model_, state->input, autocast_);
          torch::autograd::grad({out}, {state->input}, {at::ones_like(out)});
        }
      }
      c10::cuda::device_synchronize();
      const auto pool = at::cuda::graph_pool_handle();
      {
        c10::cuda::CUDAStreamGuard capture(c10::cuda::getStreamFromPool());  // capture needs a non-default stream
        state->forward.capture_begin(pool);
        state->output = encode(model_, state->input, autocast_);
        state->forward.capture_end();
        state->grad_output = at::empty_like(state->output);
        state->backward.capture_begin(pool);
        state->grad_input = torch::autograd::grad({state->output}, {state->input}, {state->grad_output})[0];
        state->backward.capture_end();
      }
      c10::cuda::device_synchronize();
    } catch (...) {
      at::autocast::set_autocast_cache_enabled(cache);
      throw;
    }
    at::autocast::set_autocast_cache_enabled(cache);
    state_ = std::move(state);
  }
  return GraphedEncode::apply(pixels, reinterpret_cast<int64_t>(state_.get()));
}

#else  // LibTorch without CUDA

struct GraphedImageEncoder::State {};

bool GraphedImageEncoder::available() { return false; }

at::Tensor GraphedImageEncoder::operator()(const at::Tensor&) {
  throw Error("GraphedImageEncoder: this clipguide was built against a LibTorch without CUDA");
}

#endif

GraphedImageEncoder::GraphedImageEncoder(clipnet::ClipModel model, at::ScalarType autocast)
    : model_(std::move(model)), autocast_(autocast) {}

GraphedImageEncoder::~GraphedImageEncoder() = default;

}  // namespace clipguide::guidance
