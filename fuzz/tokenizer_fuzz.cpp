// Fuzz target: text cleaning and OpenAI's BPE tokenizer on any bytes (invalid UTF-8 must be a clear error),
// with the vocabulary carried in tests/data.
#include "clipnet/text_clean.h"
#include "clipnet/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tokenizer = clipguide::clipnet::Tokenizer::from_file(CLIPGUIDE_FUZZ_VOCAB);
  const std::string text(reinterpret_cast<const char*>(data), size);
  clipguide::fuzz::expect_clear_errors([&] {
    clipguide::clipnet::clean_text(text);
    const auto ids = tokenizer.encode(text);
    tokenizer.decode(ids);
    tokenizer.tokenize({text}, 77, /*truncate=*/true);
  });
  return 0;
}
