// Readers for PyTorch's zip archives: torch.save files (data.pkl + data/<key> storages + byteorder)
// and TorchScript archives from torch.jit.save (data.pkl holds __torch__.* module objects whose
// attributes are submodules and tensors). Pickles go through the restricted reader; nothing runs.
#pragma once

#include "core/io/pickle.h"
#include "core/io/tensor_map.h"

#include <filesystem>
#include <string>
#include <vector>

namespace clipguide {

struct TorchArchive {
  PickleValuePtr data;                       // data.pkl's value, tensors rebuilt over shared storages
  bool torchscript = false;                  // code/ or constants.pkl present (torch.jit.save)
  std::vector<std::string> skipped_classes;  // non-whitelisted pickle globals (TorchScript's __torch__.* included)
  std::vector<std::string> records;          // record names inside the archive, without its folder prefix
};

// Reads the archive's records through LibTorch's zip reader and unpickles data.pkl. Throws
// clipguide::Error naming the file: not a zip, no data.pkl, big-endian data, a missing or short
// storage record, a malformed pickle.
TorchArchive read_torch_archive(const std::filesystem::path& path);

// Every tensor reachable from `root`, by dotted name: dict keys, list/tuple indices and object
// attributes (an Object's BUILD state) join with '.'. Pickled nn.Modules keep their state-dict names:
// the attribute dicts _parameters, _buffers and _modules add no name component. Cycles are skipped;
// nesting deeper than 256 levels is an error. `source` names the file in errors.
TensorMap flatten_tensors(const PickleValuePtr& root, const std::string& source);

}  // namespace clipguide
