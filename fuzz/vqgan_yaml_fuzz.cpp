// Fuzz target: taming-transformers YAML configs (read_vqgan_yaml through yaml-cpp).
#include "fuzz_util.h"
#include "generators/vqgan/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = clipguide::fuzz::write_input(data, size, ".yaml");
  clipguide::fuzz::expect_clear_errors([&] { clipguide::generators::vqgan::read_vqgan_yaml(path); });
  return 0;
}
