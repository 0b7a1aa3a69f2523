// TensorMap: the one currency between weight files and models, tensors by dotted state-dict name.
// Every reader in core/io/ produces one; models only ever see this, never a file format.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace clipguide {

// "visual.conv1.weight" -> tensor. std::map so iteration (and anything written from it) is sorted by name.
using TensorMap = std::map<std::string, at::Tensor>;

}  // namespace clipguide
