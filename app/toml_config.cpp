// TOML settings files through toml++ (see toml_config.h).
#include "app/toml_config.h"

#include <toml++/toml.h>

#include <cstdio>
#include <iterator>
#include <sstream>

namespace clipguide::app {

namespace {

std::string exact_text(double v) {  // 17 digits read back as the same double
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

[[noreturn]] void refuse(const std::string& key, const toml::node& node, const std::string& what) {
  throw CLI::ConfigError("line " + std::to_string(node.source().begin.line) + ": '" + key + "' " + what);
}

// A scalar's text as a flag's value would give it; nothing for tables, arrays and dates.
bool scalar_text(const toml::node& node, std::string& out) {
  if (auto s = node.as_string()) out = s->get();
  else if (auto i = node.as_integer()) out = std::to_string(i->get());
  else if (auto f = node.as_floating_point()) out = exact_text(f->get());
  else if (auto b = node.as_boolean()) out = b->get() ? "true" : "false";
  else return false;
  return true;
}

}  // namespace

std::vector<CLI::ConfigItem> TomlConfig::from_config(std::istream& input) const {
  const std::string text{std::istreambuf_iterator<char>(input), std::istreambuf_iterator<char>()};
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error& e) {
    throw CLI::ConfigError("not TOML: line " + std::to_string(e.source().begin.line) + ", column " +
                           std::to_string(e.source().begin.column) + ": " + std::string(e.description()));
  }
  std::vector<CLI::ConfigItem> items;
  for (auto&& [key, node] : root) {
    CLI::ConfigItem item;
    item.name = std::string(key.str());
    std::string value;
    if (scalar_text(node, value)) {
      item.inputs = {value};
    } else if (auto array = node.as_array()) {
      for (const auto& element : *array) {
        if (!scalar_text(element, value)) refuse(item.name, node, "is a nested list; expected a list of values");
        item.inputs.push_back(value);
      }
    } else if (node.is_table()) {
      refuse(item.name, node, "is a table; clip-guide's settings are top-level `key = value` lines");
    } else {
      refuse(item.name, node, "is a date or time; expected a string, number, boolean or list of them");
    }
    items.push_back(std::move(item));
  }
  return items;
}

std::string TomlConfig::to_config(const CLI::App*, bool, bool, std::string) const {
  throw CLI::ConfigError("clipguide writes settings with app::to_toml");
}

std::string toml_quoted(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

}  // namespace clipguide::app
