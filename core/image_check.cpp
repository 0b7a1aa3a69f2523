// Checks on image files that need no decoder (see image_io.h): the pixel limit and the completeness of PNG
// and JPEG streams. Shared by the OpenImageIO build and the build without it.
#include "core/error.h"
#include "core/image_io.h"

#include <zlib.h>

#include <cstdlib>
#include <cstring>

namespace clipguide {
namespace {

uint32_t big_endian32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// PNG: signature, then chunks (length, type, data, CRC of type + data) until IEND.
void check_png(const uint8_t* d, size_t size, const std::string& name) {
  size_t pos = 8;
  while (true) {
    if (pos + 12 > size) {
      throw Error("image file '" + name + "' is cut short: its PNG stream ends at byte " + std::to_string(size) +
                  " without the IEND chunk");
    }
    const uint32_t length = big_endian32(d + pos);
    if (length > size - pos - 12) {
      throw Error("image file '" + name + "' is cut short: its PNG chunk '" + std::string(reinterpret_cast<const char*>(d + pos + 4), 4) +
                  "' at byte " + std::to_string(pos) + " claims " + std::to_string(length) + " bytes, " +
                  std::to_string(size - pos - 12) + " are left");
    }
    const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), d + pos + 4, length + 4));
    if (crc != big_endian32(d + pos + 8 + length)) {
      throw Error("image file '" + name + "' is damaged: the CRC of its PNG chunk '" +
                  std::string(reinterpret_cast<const char*>(d + pos + 4), 4) + "' at byte " + std::to_string(pos) +
                  " does not match");
    }
    if (std::memcmp(d + pos + 4, "IEND", 4) == 0) return;
    pos += 12 + length;
  }
}

// JPEG: an end-of-image marker (FF D9) after the start of the last scan (FF DA). An EXIF thumbnail's scan and
// end marker come before the main image's, so only the last scan counts.
void check_jpeg(const uint8_t* d, size_t size, const std::string& name) {
  size_t last_scan = 0;
  for (size_t i = 2; i + 1 < size; ++i)
    if (d[i] == 0xFF && d[i + 1] == 0xDA) last_scan = i;
  for (size_t i = size; last_scan > 0 && i-- > last_scan + 1;)
    if (d[i - 1] == 0xFF && d[i] == 0xD9) return;
  throw Error("image file '" + name + "' is cut short: its JPEG stream has no end-of-image marker after " +
              (last_scan ? "its last scan" : std::string("its header (no scan at all)")));
}

}  // namespace

int64_t max_image_pixels() {
  constexpr int64_t kDefault = int64_t(8192) * 8192;
  const char* env = std::getenv("CLIPGUIDE_MAX_IMAGE_PIXELS");
  if (!env || !*env) return kDefault;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  if (*end != '\0' || v <= 0) {
    throw Error(std::string("CLIPGUIDE_MAX_IMAGE_PIXELS='") + env + "' is not a positive whole number of pixels");
  }
  return v;
}

void check_complete_image(const void* data, size_t size, const std::string& name) {
  const auto* d = static_cast<const uint8_t*>(data);
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(d, kPng, 8) == 0) return check_png(d, size, name);
  if (size >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return check_jpeg(d, size, name);
}

}  // namespace clipguide
