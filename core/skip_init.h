// Models built only to be loaded: inside a SkipInit scope the big layers allocate their parameters without
// drawing random initial values. A checkpoint overwrites every value anyway, and the draws (serial, one
// generator) were a third of the start-up: clip-guide -i 0 with ViT-B/32 and a VQGAN f16 (everything before the
// first step, then one decode and the PNG) takes 2.8 s instead of 4.1 s on two cores and peaks 270 MB lower.
// Outside the scope nothing changes: linear(), conv2d() and embedding() are torch::nn's modules with their
// own initialisation, the same random draws in the same order.
#pragma once
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>

namespace clipguide {

// While alive, init_skipped() is true on this thread. Use it only around a model that is loaded strictly
// (every parameter from the file) right after: skipped parameters hold whatever memory held.
class SkipInit {
 public:
  SkipInit();
  ~SkipInit();
  SkipInit(const SkipInit&) = delete;
  SkipInit& operator=(const SkipInit&) = delete;

 private:
  bool previous_;
};
bool init_skipped();

// torch::nn::Linear(in, out) / Conv2d(options) / Conv1d(options) / Embedding(count, dim), uninitialised under
// SkipInit.
torch::nn::Linear linear(int64_t in, int64_t out, bool bias = true);
torch::nn::Conv2d conv2d(const torch::nn::Conv2dOptions& options);
torch::nn::Conv1d conv1d(const torch::nn::Conv1dOptions& options);
torch::nn::Embedding embedding(int64_t count, int64_t dim);

}  // namespace clipguide
