// Fuzz target: webdataset tar shards (headers, sizes, sample grouping), every sample decoded.
#include "clipnet/train/dataset.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = clipguide::fuzz::write_input(data, size, ".tar");
  clipguide::fuzz::expect_clear_errors([&] {
    clipguide::train::TarDataset dataset(std::vector<std::filesystem::path>{path});
    auto reader = dataset.open_shard(0);
    for (int n = 0; n < 64; ++n) {
      auto sample = reader->next();
      if (!sample) break;
      clipguide::fuzz::expect_clear_errors([&] { dataset.decode(*sample); });
    }
  });
  return 0;
}
