// Command-line plumbing of clipguide's programs (clip-guide, clip-studio, clip-embed, clip-train, the
// benches): the run-settings table bound to CLI11, the argparse conventions VQGAN+CLIP users type
// (multi-letter short flags such as -ip, unambiguous prefixes such as --iter, --flag=value, several values
// after one flag, repeated flags), and errors reported as one line "<program>: error: ..." with the
// conventional exit codes.
#pragma once

#include "app/settings.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clipguide::app {

// Prints "<program>: error: <message without LibTorch's backtrace>" on stderr and returns 1.
int report(const std::string& program, const std::exception& e);

// argv (without argv[0]) in the form CLI11 parses: every run setting's flag, however it was typed (a
// multi-letter short "-cuts", an alias, "--flag=value", a prefix "--iter" that only one setting or
// `other_flags` entry starts with), becomes its canonical "--key"; a setting with Setting::join gets all
// its values, from every occurrence, as one joined value. `other_flags` are the program's flags outside the
// table ("--config", "--help"). Tokens that are values of a setting are kept as they are. A prefix shared by
// several flags throws CLI::ArgumentMismatch-like CLI::ParseError naming them.
std::vector<std::string> normalise_args(int argc, const char* const* argv,
                                        const std::vector<std::string>& other_flags);

// Registers every run setting on `app`, bound to `settings`: a scalar given twice keeps the last value (as
// argparse does), lists accumulate. Settings whose key is in `only` (when not empty) are the only ones added.
void add_settings(CLI::App& app, RunSettings& settings, const std::vector<std::string>& only = {});

// Parses `args` (from normalise_args) into `app`. Returns nothing on success; otherwise the exit code after
// printing: 0 for --help (help on stdout), 2 for a bad flag, 1 for any other error (e.g. a config file).
std::optional<int> parse(CLI::App& app, const std::vector<std::string>& args, const std::string& program);

// The same for a program with its own flags only (clip-embed, clip-train): argv as main() gets it.
std::optional<int> parse(CLI::App& app, int argc, char** argv, const std::string& program);

// Whether `args` (normalised) hold any of `flags`, alone or as "--flag=value". For decisions made before
// parsing, such as which config file supplies the defaults.
bool flag_given(const std::vector<std::string>& args, std::initializer_list<std::string_view> flags);

// Reads a TOML settings file (clip-guide's --config format, what its PNGs store) into `settings`, over the
// values it already has; keys outside the table are an error naming the file unless `ignore_unknown`.
void read_toml(const std::filesystem::path& path, RunSettings& settings, bool ignore_unknown = false);

// The shipped default model (clipnet/default_model.h) and the settings clip-guide and clip-studio take as
// their defaults with it: <model>/clip-guide.toml, empty when the model has none. Nothing when the model is
// not found (a program that then needs it reports default_model_path()'s error).
struct ShippedModel {
  std::filesystem::path model;
  std::string settings;  // path of clip-guide.toml, or ""
};
std::optional<ShippedModel> shipped_model();

}  // namespace clipguide::app
