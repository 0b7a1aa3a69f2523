// LatentTensors (see latent_tensors.h).
#include "generators/latent_tensors.h"

#include "core/error.h"

#include <torch/csrc/autograd/grad_mode.h>

namespace clipguide::generators {

void LatentTensors::set(const std::string& name, const at::Tensor& value) {
  at::NoGradGuard no_grad;
  for (auto& [key, tensor] : tensors_) {
    if (key != name) continue;
    if (tensor.sizes().equals(value.sizes())) {
      tensor.copy_(value);  // in place: an optimiser holding parameters() keeps working
    } else {
      tensor = value.detach().to(device_, at::kFloat).contiguous().clone().set_requires_grad(true);
    }
    return;
  }
  tensors_.emplace_back(name, value.detach().to(device_, at::kFloat).contiguous().clone().set_requires_grad(true));
}

bool LatentTensors::has(const std::string& name) const {
  for (const auto& [key, tensor] : tensors_) {
    if (key == name) return true;
  }
  return false;
}

const at::Tensor& LatentTensors::at(const std::string& name) const {
  for (const auto& [key, tensor] : tensors_) {
    if (key == name) return tensor;
  }
  throw Error(owner_ + ": no tensor '" + name + "'");
}

std::vector<at::Tensor> LatentTensors::all() const {
  std::vector<at::Tensor> out;
  for (const auto& [key, tensor] : tensors_) out.push_back(tensor);
  return out;
}

TensorMap LatentTensors::tensors() const {
  TensorMap out;
  for (const auto& [key, tensor] : tensors_) out[key] = tensor;
  return out;
}

TensorMap LatentTensors::state() const {
  TensorMap out;
  for (const auto& [key, tensor] : tensors_) out[key] = tensor.detach().clone();
  return out;
}

void LatentTensors::load(const TensorMap& state) {
  for (const auto& [key, tensor] : tensors_) {
    auto it = state.find(key);
    if (it == state.end()) throw Error(owner_ + " state: no '" + key + "' tensor");
    if (!it->second.sizes().equals(tensor.sizes())) {
      throw Error(owner_ + " state: '" + key + "': got " + shape_str(it->second.sizes()) + ", expected " +
                  shape_str(tensor.sizes()));
    }
  }
  for (const auto& [key, tensor] : tensors_) set(key, state.at(key));
}

}  // namespace clipguide::generators
