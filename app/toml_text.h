// Writing TOML text (the reader is app/toml_config.h; both are in toml_config.cpp): what app::to_toml needs,
// without CLI11's or toml++'s headers.
#pragma once

#include <cstddef>
#include <string>

namespace clipguide::app {

// `s` as a TOML basic string: quotes, backslashes and control characters escaped. `s` must be UTF-8.
std::string toml_quoted(const std::string& s);

// Where `s` is not valid UTF-8 (TOML files must be): the offset of the first bad byte, or npos.
size_t invalid_utf8_at(const std::string& s);

}  // namespace clipguide::app
