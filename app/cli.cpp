// The run settings on the command line (see cli.h).
#include "app/cli.h"

#include "app/toml_config.h"

#include "clipnet/default_model.h"
#include "core/error.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>

namespace clipguide::app {
namespace {

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

bool is_number(const std::string& s) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return *end == '\0';
}

bool looks_like_flag(const std::string& s) { return s.size() > 1 && s[0] == '-' && !is_number(s); }

// Every long name (underscored, without "--") → what it stands for: a setting's key, or an other flag.
struct Names {
  std::map<std::string, std::string> long_names;   // "cutn" → "num_cuts", "config" → "--config"
  std::map<std::string, const Setting*> shorts;    // "-cuts" → row, "-p" → row
};

Names collect_names(const std::vector<std::string>& other_flags) {
  Names n;
  for (const auto& s : run_setting_table()) {
    n.long_names[s.key] = s.key;
    for (const auto& name : s.names) {
      if (name.rfind("--", 0) == 0) n.long_names[underscored(name.substr(2))] = s.key;
      else n.shorts[name] = &s;
    }
  }
  for (const auto& f : other_flags) {
    if (f.rfind("--", 0) == 0) n.long_names[underscored(f.substr(2))] = f;
  }
  return n;
}

// The setting key or other flag a "--name" stands for: exact, else the one flag it is a prefix of.
std::string resolve_long(const Names& n, const std::string& typed) {
  const std::string bare = underscored(typed.substr(2));
  if (auto it = n.long_names.find(bare); it != n.long_names.end()) return it->second;
  std::set<std::string> targets;
  std::vector<std::string> spelled;
  for (auto it = n.long_names.lower_bound(bare); it != n.long_names.end() && it->first.rfind(bare, 0) == 0; ++it) {
    targets.insert(it->second);
    spelled.push_back("--" + it->first);
  }
  if (targets.size() == 1) return *targets.begin();
  if (targets.size() > 1) {
    std::string list;
    for (const auto& s : spelled) list += (list.empty() ? "" : ", ") + s;
    throw CLI::ArgumentMismatch(typed + " is ambiguous: it could be " + list);
  }
  return "";
}

}  // namespace

int report(const std::string& program, const std::exception& e) {
  std::cerr << program << ": error: " << error_text(e) << "\n";
  return 1;
}

std::vector<std::string> normalise_args(int argc, const char* const* argv, const std::vector<std::string>& other_flags) {
  const Names names = collect_names(other_flags);
  std::vector<std::string> out;
  std::map<std::string, std::vector<std::string>> joined;  // key → values of every occurrence
  std::vector<std::string> joined_order;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (; i < argc; ++i) out.emplace_back(argv[i]);
      break;
    }
    if (!looks_like_flag(a)) {
      out.push_back(a);
      continue;
    }
    std::optional<std::string> inline_value;
    const Setting* row = nullptr;
    std::string other;
    if (a.rfind("--", 0) == 0) {
      if (auto eq = a.find('='); eq != std::string::npos) inline_value = a.substr(eq + 1), a = a.substr(0, eq);
      std::string target = resolve_long(names, a);
      if (target.rfind("--", 0) == 0) other = target;
      else if (!target.empty()) row = find_setting(target);
    } else if (auto it = names.shorts.find(a); it != names.shorts.end()) {
      row = it->second;
    }
    if (!row) {  // not a run setting: the program's own flag (or an unknown one, for CLI11 to report)
      out.push_back((other.empty() ? a : other) + (inline_value ? "=" + *inline_value : ""));
      continue;
    }
    const bool is_flag = std::holds_alternative<bool RunSettings::*>(row->field);
    if (row->join) {
      if (!joined.count(row->key)) joined_order.push_back(row->key);
      auto& values = joined[row->key];
      if (inline_value) values.push_back(*inline_value);
      else
        while (i + 1 < argc && !looks_like_flag(argv[i + 1])) values.emplace_back(argv[++i]);
      continue;
    }
    out.push_back("--" + row->key);
    if (inline_value) {
      out.push_back(*inline_value);
    } else if (!is_flag) {
      // Values are kept as typed, even when they start with '-' (a prompt, a negative shift).
      const int count = row->values;
      if (count > 0) {
        for (int k = 0; k < count && i + 1 < argc; ++k) out.emplace_back(argv[++i]);
      } else {
        while (i + 1 < argc && !looks_like_flag(argv[i + 1])) out.emplace_back(argv[++i]);
      }
    }
  }
  for (const auto& key : joined_order) {
    std::string value;
    for (const auto& v : joined[key]) value += (value.empty() ? "" : std::string(1, find_setting(key)->join)) + v;
    out.push_back("--" + key);
    out.push_back(value);
  }
  return out;
}

void add_settings(CLI::App& app, RunSettings& settings, const std::vector<std::string>& only) {
  app.config_formatter(std::make_shared<TomlConfig>());  // --config files are real TOML
  for (const auto& row : run_setting_table()) {
    if (!only.empty() && std::find(only.begin(), only.end(), row.key) == only.end()) continue;
    // CLI11 takes one-letter shorts and long names; multi-letter shorts are mapped by normalise_args.
    std::string spelled = "--" + row.key;
    if (std::string dashed = row.key; std::replace(dashed.begin(), dashed.end(), '_', '-'), dashed != row.key) {
      spelled += ",--" + dashed;
    }
    for (const auto& name : row.names) {
      if (name.rfind("--", 0) == 0 || name.size() == 2) spelled += "," + name;
    }
    std::visit(
        [&](auto member) {
          auto& value = settings.*member;
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, bool>) {
            app.add_flag(spelled, value, row.help)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
          } else if constexpr (std::is_same_v<T, std::string> || std::is_arithmetic_v<T>) {
            app.add_option(spelled, value, row.help)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
          } else {
            auto* option = app.add_option(spelled, value, row.help);
            // A fixed count (size: 2) is one value given again: the last wins. Other lists accumulate.
            if (row.values > 1) option->expected(row.values)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
          }
        },
        row.field);
  }
}

std::optional<int> parse(CLI::App& app, const std::vector<std::string>& args, const std::string& program) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 parses a vector from its back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << program << ": error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {
    return report(program, e);
  }
  return std::nullopt;
}

std::optional<int> parse(CLI::App& app, int argc, char** argv, const std::string& program) {
  return parse(app, std::vector<std::string>(argv + std::min(argc, 1), argv + argc), program);
}

bool flag_given(const std::vector<std::string>& args, std::initializer_list<std::string_view> flags) {
  for (const std::string_view a : args) {
    for (std::string_view flag : flags) {
      if (a == flag || (a.size() > flag.size() && a.substr(0, flag.size()) == flag && a[flag.size()] == '=')) return true;
    }
  }
  return false;
}

void read_toml(const std::filesystem::path& path, RunSettings& settings, bool ignore_unknown) {
  CLI::App app;
  add_settings(app, settings);
  app.set_config("--config", path.string(), "", /*config_required=*/true);
  app.allow_config_extras(ignore_unknown ? CLI::config_extras_mode::ignore : CLI::config_extras_mode::error);
  try {
    app.parse(std::vector<std::string>{});
  } catch (const CLI::ParseError& e) {
    throw Error("settings file '" + path.string() + "': " + e.what());
  }
}

std::optional<ShippedModel> shipped_model() {
  ShippedModel out;
  try {
    out.model = clipnet::default_model_path();
  } catch (const Error&) {
    return std::nullopt;
  }
  if (std::filesystem::is_regular_file(out.model / "clip-guide.toml")) out.settings = (out.model / "clip-guide.toml").string();
  return out;
}

}  // namespace clipguide::app
