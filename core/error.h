// clipguide's exception type and the small formatting helpers every error message uses.
// Library code throws; only a tool's main() catches and prints (see STYLE.md, rule 6).
#pragma once

#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace clipguide {

// Bad input: a file, key, flag or value that is not what was expected. The message names it.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "[2, 3, 224, 224]"
std::string shape_str(c10::IntArrayRef shape);

// Text of any exception, without LibTorch's C++ backtrace (c10::Error::what() appends one).
std::string error_text(const std::exception& e);

}  // namespace clipguide
