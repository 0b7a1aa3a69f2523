// Image files in and out: read any format OpenImageIO knows into an RGB uint8 tensor, write PNG/JPEG/...
// atomically with text metadata (clip-guide stores its settings there). Built with OpenImageIO
// (image_io_oiio.cpp) or without it (image_io_none.cpp: every call throws a clear Error).
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>

namespace clipguide {

// True when this build can read and write image files.
bool image_io_available();

// The most pixels (width x height) an image file may have: 64 megapixels (8192 x 8192), or the value of the
// environment variable CLIPGUIDE_MAX_IMAGE_PIXELS. A larger header is refused before anything is decoded
// (a 16384 x 16384 PNG of a few kilobytes would take 800 MB to decode).
int64_t max_image_pixels();

// Checks that an encoded PNG or JPEG is complete before a decoder sees it (libpng prints its own messages on
// a cut stream; libjpeg fills the missing part with grey): PNG chunks with their CRCs up to IEND, a JPEG's
// end-of-image marker after its last scan. Other formats pass. Throws Error naming `name`.
void check_complete_image(const void* data, size_t size, const std::string& name);

// (3, H, W) uint8 RGB, as PIL's Image.open(path).convert("RGB") gives it: grey is replicated, alpha is
// dropped (not composited, not premultiplied), 16-bit samples are scaled to 8 bits. With keep_alpha, a
// file that has an alpha channel gives (4, H, W) RGBA (unpremultiplied), others still (3, H, W).
// Refused with an Error naming the file: anything but a regular file (/dev/zero, a folder, a pipe), a cut
// PNG or JPEG (check_complete_image), more than max_image_pixels() or more than 4 channels.
at::Tensor read_image(const std::filesystem::path& path, bool keep_alpha = false);

// read_image on an encoded file held in memory (an image inside a tar shard): `name` picks the format by
// its extension ("000123.jpg") and names the image in errors. Formats whose reader cannot take a memory
// buffer go through a temporary file.
at::Tensor decode_image(const void* data, size_t size, const std::string& name, bool keep_alpha = false);

// Writes (3, H, W) uint8, or float in [0, 1] (rounded), to `path`; the format follows the extension.
// Atomic: a temporary file beside it is checked complete (check_complete_image), flushed to disk and renamed
// over `path`, so a reader never sees half an image and a failed write (a full disk) leaves `path` as it
// was. A float image with NaN or inf pixels is refused (Error), never written.
// `metadata` becomes text chunks (PNG tEXt) where the format has them.
void write_image(const std::filesystem::path& path, const at::Tensor& image,
                 const std::map<std::string, std::string>& metadata = {});

// Checks before a run that write_image(path) can succeed: an image extension this build writes, a folder
// that exists, and one where files can be created (a probe file is created and removed: permissions alone
// do not tell for root or a read-only mount). Throws Error naming `what` ("--output") and the path.
void check_image_output(const std::filesystem::path& path, const std::string& what);

// The text metadata of an image file (what write_image stored), by key.
std::map<std::string, std::string> read_image_metadata(const std::filesystem::path& path);

}  // namespace clipguide
