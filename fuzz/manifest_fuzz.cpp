// Fuzz target: CSV/TSV training manifests (quoting, columns, line numbers), then every row read (its image
// path does not exist: a clear error too).
#include "clipnet/train/dataset.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = clipguide::fuzz::write_input(data, size, ".csv");
  clipguide::fuzz::expect_clear_errors([&] {
    clipguide::train::CsvOptions options;
    options.separator = size > 0 && data[0] == '\t' ? '\t' : ',';
    clipguide::train::CsvDataset dataset(path, options);
    for (int64_t i = 0; i < std::min<int64_t>(dataset.size(), 4); ++i) {
      clipguide::fuzz::expect_clear_errors([&] { dataset.get(i); });
    }
  });
  return 0;
}
