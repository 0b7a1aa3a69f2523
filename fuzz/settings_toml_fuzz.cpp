// Fuzz target: clip-guide's TOML settings (--config, and what --from-png reads out of a PNG) through
// app::read_toml and app::check. Settings that are accepted must also survive the round trip the tools
// make: written back with to_toml (into a PNG's metadata), read again to the same settings. A round trip
// that fails or changes a setting aborts: a finding.
#include "app/cli.h"
#include "app/settings.h"
#include "fuzz_util.h"

#include <cstdio>
#include <cstdlib>
#include <optional>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace app = clipguide::app;
  std::optional<app::RunSettings> accepted;
  clipguide::fuzz::expect_clear_errors([&] {
    app::RunSettings settings;
    app::read_toml(clipguide::fuzz::write_input(data, size, ".toml"), settings);
    app::check(settings);
    accepted = settings;
  });
  if (!accepted) return 0;
  const std::string text = app::to_toml(*accepted);
  try {
    app::RunSettings again;
    app::read_toml(clipguide::fuzz::write_input(reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                                                ".again.toml"),
                   again);
    app::check(again);
    if (app::to_toml(again) == text) return 0;
    std::fprintf(stderr, "settings changed on the round trip:\n%s\n---\n%s\n", text.c_str(), app::to_toml(again).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "written settings do not read back: %s\n%s\n", e.what(), text.c_str());
  }
  std::abort();
}
