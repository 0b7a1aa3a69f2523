// The CLIP model that ships with clipguide: a small CLIP trained by clip-train on the shapes world
// (models/shapes-clip/, see its README.md), the default of every tool when no --model is given, so
// everything works offline on a fresh machine.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace clipguide::clipnet {

// Folder name of the shipped model under models/ (weights, config.json, vocab.json + merges.txt).
inline constexpr const char* kDefaultModelName = "shapes-clip";

// Where the default model is looked for, in order: $CLIPGUIDE_DEFAULT_MODEL (a model file or folder),
// <prefix>/share/clipguide/models/shapes-clip (installed beside this library), <source tree>/models/shapes-clip.
std::vector<std::filesystem::path> default_model_candidates();

// The first of `candidates` that exists; an Error listing every place searched otherwise.
std::filesystem::path default_model_path(const std::vector<std::filesystem::path>& candidates = default_model_candidates());

}  // namespace clipguide::clipnet
