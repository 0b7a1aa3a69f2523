// parse_device (see device.h).
#include "clipnet/device.h"

#include "clipnet/error.h"

#include <torch/cuda.h>

namespace clipguide::clipnet {

c10::Device parse_device(const std::string& name, const std::string& flag) {
  if (name == "cpu") return c10::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) throw Error(flag + " cuda: no CUDA device is available");
    return {c10::kCUDA, 0};
  }
  if (name == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  throw Error(flag + ": expected cpu, cuda or auto, got '" + name + "'");
}

}  // namespace clipguide::clipnet
