// Image files in and out: read any format OpenImageIO knows into an RGB uint8 tensor, write PNG/JPEG/...
// atomically with text metadata (clip-guide stores its settings there). Built with OpenImageIO
// (image_io_oiio.cpp) or without it (image_io_none.cpp: every call throws a clear Error).
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>

namespace clipguide::clipnet {

// True when this build can read and write image files.
bool image_io_available();

// (3, H, W) uint8 RGB, as PIL's Image.open(path).convert("RGB") gives it: grey is replicated, alpha is
// dropped (not composited, not premultiplied), 16-bit samples are scaled to 8 bits. With keep_alpha, a
// file that has an alpha channel gives (4, H, W) RGBA (unpremultiplied), others still (3, H, W).
at::Tensor read_image(const std::filesystem::path& path, bool keep_alpha = false);

// read_image on an encoded file held in memory (an image inside a tar shard): `name` picks the format by
// its extension ("000123.jpg") and names the image in errors. Formats whose reader cannot take a memory
// buffer go through a temporary file.
at::Tensor decode_image(const void* data, size_t size, const std::string& name, bool keep_alpha = false);

// Writes (3, H, W) uint8, or float in [0, 1] (rounded), to `path`; the format follows the extension.
// Atomic: a temporary file beside it is renamed over `path`, so a reader never sees half an image.
// `metadata` becomes text chunks (PNG tEXt) where the format has them.
void write_image(const std::filesystem::path& path, const at::Tensor& image,
                 const std::map<std::string, std::string>& metadata = {});

// The text metadata of an image file (what write_image stored), by key.
std::map<std::string, std::string> read_image_metadata(const std::filesystem::path& path);

}  // namespace clipguide::clipnet
