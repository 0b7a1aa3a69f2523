// Command-line plumbing shared by clipguide's programs (tools/ and gui/): parse flags with CLI11, print
// --help, and report any error as one line "<program>: error: ..." with the conventional exit codes.
#pragma once

#include "clipnet/default_model.h"
#include "clipnet/error.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace clipguide::cli {

// Prints "<program>: error: <message without LibTorch's backtrace>" on stderr and returns 1.
inline int report(const std::string& program, const std::exception& e) {
  std::cerr << program << ": error: " << error_text(e) << "\n";
  return 1;
}

// Parses argv into `app`. Returns nothing on success; otherwise the exit code after printing: 0 for
// --help (help on stdout), 2 for a bad flag, 1 for any other error while parsing (e.g. a config file).
inline std::optional<int> parse(CLI::App& app, int argc, char** argv, const std::string& program) {
  try {
    app.parse(argc, argv);
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

// Whether argv holds any of `flags`, alone ("-m x") or with its value ("--clip_model=x"). For decisions that
// must be made before parsing, such as which config file supplies the defaults.
inline bool flag_given(int argc, char** argv, std::initializer_list<std::string_view> flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    for (std::string_view flag : flags) {
      if (a == flag || (a.size() > flag.size() && a.substr(0, flag.size()) == flag && a[flag.size()] == '=')) return true;
    }
  }
  return false;
}

// The shipped default model (clipnet/default_model.h) and the settings clip-guide and clip-studio take as their
// defaults with it: <model>/clip-guide.toml, empty when the model has none. Nothing when the model is not found
// (a program that then needs it reports default_model_path()'s error).
struct ShippedModel {
  std::filesystem::path model;
  std::string settings;  // path of clip-guide.toml, or ""
};
inline std::optional<ShippedModel> shipped_model() {
  ShippedModel out;
  try {
    out.model = clipnet::default_model_path();
  } catch (const Error&) {
    return std::nullopt;
  }
  if (std::filesystem::is_regular_file(out.model / "clip-guide.toml")) out.settings = (out.model / "clip-guide.toml").string();
  return out;
}

}  // namespace clipguide::cli
