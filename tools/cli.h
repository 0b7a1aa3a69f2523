// Command-line plumbing shared by clipguide's programs (tools/ and gui/): parse flags with CLI11, print
// --help, and report any error as one line "<program>: error: ..." with the conventional exit codes.
#pragma once

#include "clipnet/error.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <optional>
#include <string>

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

}  // namespace clipguide::cli
