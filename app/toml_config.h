// The TOML reader behind every settings file clipguide's programs take (--config, a model's
// clip-guide.toml, the settings a PNG stores): toml++ parses real TOML (escapes, comments after values,
// '#' inside strings, multi-line arrays), and the top-level keys become CLI11 config items, so the flags
// given on the command line still win over the file. CLI11's own reader (2.1) is a lenient subset that cuts
// a value at any '#', even inside quotes, and knows no escapes: settings it read did not survive being
// written back.
#pragma once

#include "app/toml_text.h"

#include <CLI/CLI.hpp>

#include <string>

namespace clipguide::app {

class TomlConfig : public CLI::Config {
 public:
  // A top-level `key = value` becomes one item: a string, number or boolean is one input (its text); an
  // array of those, one input per element. Tables, nested arrays and dates are a CLI::ConfigError naming the
  // key and its line; so is a document that is not TOML (with its line and column).
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
  // Not used: clipguide writes its settings with app::to_toml.
  std::string to_config(const CLI::App*, bool, bool, std::string) const override;
};

}  // namespace clipguide::app
