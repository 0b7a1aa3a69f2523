// default_model (default_model.h): finds the shipped model in the environment, the install prefix or the
// source tree. The two folders come from CMake (default_model_dirs.cpp, generated).
#include "clipnet/default_model.h"

#include "core/error.h"

#include <dlfcn.h>

#include <cstdlib>
#include <system_error>

namespace clipguide::clipnet {

extern const char* const kSourceModelsDir;   // <source>/models
extern const char* const kInstallModelsDir;  // share/clipguide/models, relative to the install prefix
extern const char* const kInstallLibDir;     // lib (or lib/x86_64-linux-gnu), relative to the install prefix

namespace fs = std::filesystem;

std::vector<fs::path> default_model_candidates() {
  std::vector<fs::path> out;
  if (const char* env = std::getenv("CLIPGUIDE_DEFAULT_MODEL"); env && *env) out.emplace_back(env);
  // Installed: <prefix>/<libdir>/libclipguide_clipnet.so, so the prefix is libdir's depth above this library.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&default_model_candidates), &info) != 0 && info.dli_fname != nullptr) {
    fs::path prefix = fs::path(info.dli_fname).parent_path();
    for (const auto& part : fs::path(kInstallLibDir)) {
      (void)part;
      prefix = prefix.parent_path();
    }
    out.push_back(prefix / kInstallModelsDir / kDefaultModelName);
  }
  out.push_back(fs::path(kSourceModelsDir) / kDefaultModelName);
  return out;
}

fs::path default_model_path(const std::vector<fs::path>& candidates) {
  std::string searched;
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (fs::exists(p, ec)) return p;
    searched += (searched.empty() ? "" : ", ") + p.string();
  }
  throw Error("the default CLIP model '" + std::string(kDefaultModelName) + "' was not found (searched " + searched +
              "); pass a model with --model, or set CLIPGUIDE_DEFAULT_MODEL");
}

}  // namespace clipguide::clipnet
