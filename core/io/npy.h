// NumPy .npy files (format 1.0-3.0) for a subset of dtypes: f32 f64 f16 i64 i32 u8 bool,
// little-endian, C order on write (Fortran order is accepted on read). For dumping and exchanging
// arrays with Python tooling; weights go through safetensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>

namespace clipguide {

// Writes a contiguous CPU copy of `tensor` atomically (<path>.tmp-XXXXXXXX, then rename).
// Throws clipguide::Error for other dtypes.
void write_npy(const std::filesystem::path& path, const at::Tensor& tensor);

// Reads a .npy file into an owning CPU tensor. Throws clipguide::Error naming the file for a bad
// magic or header, an unsupported dtype (big-endian included), or a data size that does not match.
at::Tensor read_npy(const std::filesystem::path& path);

}  // namespace clipguide
