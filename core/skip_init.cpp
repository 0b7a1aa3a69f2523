// SkipInit and the layers that honour it (see skip_init.h). Under SkipInit a layer is built at the smallest
// size (its own initialisation then draws a handful of values) and its parameters are then resized in place
// to empty tensors of the real shape: the module keeps torch::nn's type, options, forward and parameter names.
#include "core/skip_init.h"

#include "core/error.h"

#include <ATen/ops/empty.h>

#include <string>
#include <vector>

namespace clipguide {
namespace {
thread_local bool skip_init = false;

// Gives `parameter` (registered in its module) the shape `sizes`, uninitialised.
void resize_uninitialised(at::Tensor& parameter, c10::IntArrayRef sizes) {
  if (parameter.defined()) parameter.set_data(at::empty(sizes, parameter.options()));
}
}  // namespace

SkipInit::SkipInit() : previous_(skip_init) { skip_init = true; }
SkipInit::~SkipInit() { skip_init = previous_; }
bool init_skipped() { return skip_init; }

torch::nn::Linear linear(int64_t in, int64_t out, bool bias) {
  if (!skip_init) return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  torch::nn::Linear m(torch::nn::LinearOptions(1, 1).bias(bias));
  m->options.in_features(in).out_features(out);
  resize_uninitialised(m->weight, {out, in});
  resize_uninitialised(m->bias, {out});
  return m;
}

namespace {
// A Conv1d/Conv2d built at one channel per group, then given its real, uninitialised weight and bias.
template <class Conv, class Options>
Conv uninitialised_conv(const Options& options, const char* what) {
  const int64_t groups = options.groups();
  if (options.in_channels() % groups != 0 || options.out_channels() % groups != 0)
    throw Error(std::string(what) + ": channels " + std::to_string(options.in_channels()) + " -> " +
                std::to_string(options.out_channels()) + " not divisible by groups " + std::to_string(groups));
  Options small = options;
  small.in_channels(groups).out_channels(groups);
  Conv m(small);
  m->options.in_channels(options.in_channels()).out_channels(options.out_channels());
  std::vector<int64_t> shape = {options.out_channels(), options.in_channels() / groups};
  for (int64_t k : *options.kernel_size()) shape.push_back(k);
  resize_uninitialised(m->weight, shape);
  resize_uninitialised(m->bias, {options.out_channels()});
  return m;
}
}  // namespace

torch::nn::Conv2d conv2d(const torch::nn::Conv2dOptions& options) {
  if (!skip_init) return torch::nn::Conv2d(options);
  return uninitialised_conv<torch::nn::Conv2d>(options, "conv2d");
}

torch::nn::Conv1d conv1d(const torch::nn::Conv1dOptions& options) {
  if (!skip_init) return torch::nn::Conv1d(options);
  return uninitialised_conv<torch::nn::Conv1d>(options, "conv1d");
}

torch::nn::Embedding embedding(int64_t count, int64_t dim) {
  if (!skip_init) return torch::nn::Embedding(count, dim);
  torch::nn::Embedding m(1, 1);
  m->options.num_embeddings(count).embedding_dim(dim);
  resize_uninitialised(m->weight, {count, dim});
  return m;
}

}  // namespace clipguide
