// Fuzz target: vocabulary files (OpenAI merges text, gzip or plain) through Tokenizer::from_file.
#include "clipnet/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = clipguide::fuzz::write_input(data, size, ".txt");
  clipguide::fuzz::expect_clear_errors([&] {
    auto tokenizer = clipguide::clipnet::Tokenizer::from_file(path);
    tokenizer.encode("a red circle on a blue background");
  });
  return 0;
}
