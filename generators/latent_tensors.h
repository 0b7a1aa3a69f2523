// The tensors a generator optimises (its latent), by name, with the state()/load_state() every generator
// needs. set() creates each tensor once (float, contiguous, on the generator's device, requires_grad) and
// afterwards copies into it in place, so an optimiser holding parameters() keeps working; state() clones
// them; load() checks that every one is there with its shape, with errors naming the generator and key.
#pragma once

#include "generators/generator.h"

#include <string>
#include <utility>
#include <vector>

namespace clipguide::generators {

class LatentTensors {
 public:
  // `owner` starts error messages ("pixel generator"); tensors live on `device`.
  LatentTensors(std::string owner, c10::Device device) : owner_(std::move(owner)), device_(device) {}

  // Sets `name` to `value` (no autograd): in place when it exists with this shape, else a fresh leaf.
  void set(const std::string& name, const at::Tensor& value);
  bool has(const std::string& name) const;
  const at::Tensor& at(const std::string& name) const;  // a clipguide::Error when absent
  std::vector<at::Tensor> all() const;                   // in the order they were first set
  TensorMap tensors() const;                             // the tensors themselves (not copies), by name

  TensorMap state() const;  // every tensor, cloned and detached
  // Sets every tensor from `state` (extra keys ignored); a missing key or a shape that differs is a
  // clipguide::Error, before anything is changed.
  void load(const TensorMap& state);

 private:
  std::string owner_;
  c10::Device device_;
  std::vector<std::pair<std::string, at::Tensor>> tensors_;
};

}  // namespace clipguide::generators
