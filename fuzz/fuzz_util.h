// What every fuzz target shares: the input written to a per-process file (the readers take paths, as users
// give them), and the rule that a clipguide::Error is the expected outcome of bad input. Any other exception
// (std::out_of_range, c10::Error, ...) escapes and libFuzzer reports it as a finding: malformed input must
// get a clear Error, not whatever a library throws.
#pragma once

#include "core/error.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace clipguide::fuzz {

// Writes data to <tmp>/clipguide-fuzz-<pid><suffix> (the same file every run of this process) and returns it.
inline std::filesystem::path write_input(const uint8_t* data, size_t size, const std::string& suffix) {
  static const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const auto path = dir / ("clipguide-fuzz-" + std::to_string(::getpid()) + suffix);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs fn(); a clipguide::Error is a clear refusal of bad input, the expected outcome.
template <typename Fn>
void expect_clear_errors(Fn&& fn) {
  try {
    fn();
  } catch (const Error&) {
  }
}

}  // namespace clipguide::fuzz
