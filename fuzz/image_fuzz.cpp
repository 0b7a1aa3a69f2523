// Fuzz target: image decoding from memory (PNG or JPEG by the first byte), after clipguide's own checks
// (complete streams, pixel and channel limits).
#include "core/image_io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string name = size > 0 && data[0] == 0xFF ? "fuzz.jpg" : "fuzz.png";
  clipguide::fuzz::expect_clear_errors([&] { clipguide::decode_image(data, size, name); });
  return 0;
}
