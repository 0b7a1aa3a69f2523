// GraphedImageEncoder: one CLIP member's encode_image, forward and backward (the gradient w.r.t. the pixels
// only: the weights are frozen), captured as two CUDA graphs for one input shape and autocast setting and
// replayed through a custom autograd function, the way torch.cuda.make_graphed_callables does it. Saves the
// launch of some 600 kernels a step (ViT-B/32: 12 blocks, forward and backward). The rest of a guidance
// step is not captured: cutout placement is drawn on the host every step and the loss is read back.
// Guide uses it when GuideOptions::cuda_graphs is set and the member is on a CUDA device.
// Shapes: N cutouts, S the member's input size, E embedding width.
#pragma once

#include "clipnet/clip_model.h"

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <memory>

namespace clipguide::guidance {

class GraphedImageEncoder {
 public:
  // `model` on a CUDA device, frozen. Nothing is captured until the first call.
  GraphedImageEncoder(clipnet::ClipModel model, at::ScalarType autocast);
  ~GraphedImageEncoder();
  GraphedImageEncoder(const GraphedImageEncoder&) = delete;
  GraphedImageEncoder& operator=(const GraphedImageEncoder&) = delete;

  // (N, 3, S, S) normalised pixels on the model's device → (N, E) float features, differentiable w.r.t. the
  // pixels. The first call (and a call with another shape) warms up and captures; later calls replay.
  // The result must be backpropagated (or dropped) before the next call: the graphs have one set of buffers.
  at::Tensor operator()(const at::Tensor& pixels);

  at::ScalarType autocast() const { return autocast_; }
  // Whether this build of clipguide can capture CUDA graphs (LibTorch with CUDA). Without, operator()
  // throws clipguide::Error.
  static bool available();

  struct State;  // the graphs and their static buffers (CUDA builds only)

 private:
  clipnet::ClipModel model_;
  at::ScalarType autocast_;
  std::unique_ptr<State> state_;
};

}  // namespace clipguide::guidance
