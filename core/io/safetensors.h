// Reader and writer for safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header size, a JSON header (dtype, shape, data_offsets per tensor, optional
// __metadata__), then the raw little-endian tensor bytes. Validation follows the reference package.
#pragma once

#include "core/io/tensor_map.h"

#include <c10/core/ScalarType.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace clipguide {

// Largest header the reader accepts, as in the reference implementation (guards against absurd sizes).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsFile {
  TensorMap tensors;                              // every tensor, CPU, owning (or keeping alive) its memory
  std::map<std::string, std::string> metadata;    // the header's "__metadata__" (string -> string)
};

// Reads and validates the whole file (one read). Throws clipguide::Error naming the file, the key
// and what was expected vs found: header size, JSON, dtype, shape, offsets (holes, overlaps,
// byte counts, end of data), duplicate keys.
SafetensorsFile read_safetensors(const std::filesystem::path& path);

// Writes contiguous CPU copies of `tensors` in key order, with `metadata` as __metadata__ when not
// empty. Atomic: writes <path>.tmp-XXXXXXXX and renames it over `path`.
void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32" <-> at::kFloat, for the dtypes both safetensors and this LibTorch know.
std::optional<at::ScalarType> safetensors_dtype_from_name(const std::string& name);
std::optional<std::string> safetensors_dtype_name(at::ScalarType dtype);

}  // namespace clipguide
