// Fuzz target: core/io/safetensors (header JSON, dtypes, shapes, offsets).
#include "core/io/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = clipguide::fuzz::write_input(data, size, ".safetensors");
  clipguide::fuzz::expect_clear_errors([&] { clipguide::read_safetensors(path); });
  return 0;
}
