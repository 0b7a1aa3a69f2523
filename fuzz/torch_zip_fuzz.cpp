// Fuzz target: torch.save zip archives and TorchScript archives through read_weights (the zip reader,
// the restricted pickle machine, storages, flattening).
#include "core/io/weights.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = clipguide::fuzz::write_input(data, size, ".pt");
  clipguide::fuzz::expect_clear_errors([&] { clipguide::read_weights(path); });
  return 0;
}
