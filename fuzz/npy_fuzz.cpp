// Fuzz target: core/io/npy (header dict, dtype, shape, data length).
#include "core/io/npy.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = clipguide::fuzz::write_input(data, size, ".npy");
  clipguide::fuzz::expect_clear_errors([&] { clipguide::read_npy(path); });
  return 0;
}
