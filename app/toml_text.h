// Writing TOML text (the reader is app/toml_config.h; both are in toml_config.cpp): what app::to_toml needs,
// without CLI11's or toml++'s headers.
#pragma once

#include <string>

namespace clipguide::app {

// `s` as a TOML basic string: quotes, backslashes and control characters escaped. `s` must be UTF-8.
std::string toml_quoted(const std::string& s);

}  // namespace clipguide::app
