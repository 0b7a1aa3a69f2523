// parse_device (see device.h).
#include "core/device.h"

#include "core/error.h"

#include <torch/cuda.h>

namespace clipguide {

c10::Device parse_device(const std::string& name, const std::string& flag) {
  if (name == "cpu") return c10::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) throw Error(flag + " cuda: no CUDA device is available");
    return {c10::kCUDA, 0};
  }
  if (name == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() < 9 &&
      name.find_first_not_of("0123456789", 5) == std::string::npos) {
    const int index = std::stoi(name.substr(5));
    if (!torch::cuda::is_available()) throw Error(flag + " " + name + ": no CUDA device is available");
    if (index >= static_cast<int>(torch::cuda::device_count())) {
      throw Error(flag + " " + name + ": there are only " + std::to_string(torch::cuda::device_count()) + " CUDA devices");
    }
    return {c10::kCUDA, static_cast<c10::DeviceIndex>(index)};
  }
  throw Error(flag + ": expected cpu, cuda, cuda:N or auto, got '" + name + "'");
}

}  // namespace clipguide
