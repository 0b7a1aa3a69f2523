// Fuzz target: prompt specs ("text:weight:stop|..."), as --prompts and --image_prompts take them.
#include "fuzz_util.h"
#include "guidance/prompt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  clipguide::fuzz::expect_clear_errors([&] { clipguide::guidance::parse_prompts(spec); });
  return 0;
}
