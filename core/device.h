// Device names as the tools take them: "cpu", "cuda" (first GPU, error when there is none) or "auto".
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace clipguide {

// Throws clipguide::Error naming `flag` when the name is unknown or CUDA is asked for but absent.
c10::Device parse_device(const std::string& name, const std::string& flag = "--device");

}  // namespace clipguide
