// load_clip() for every supported file and folder layout (see checkpoint.h); the state-dict copy itself is
// core/state_dict.h. File formats themselves are core/io's business; this file only sees TensorMaps.
#include "clipnet/checkpoint.h"

#include "clipnet/hf_clip.h"
#include "core/error.h"
#include "core/io/weights.h"
#include "core/skip_init.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/isfinite.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace clipguide::clipnet {
namespace fs = std::filesystem;
namespace {


nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": invalid JSON: " + e.what());
  }
}

bool is_hf_config_json(const nlohmann::json& j) {
  return j.is_object() && (j.contains("vision_config") || j.contains("text_config") || j.value("model_type", "") == "clip");
}

// Weights and a description of their format.
struct ReadResult {
  TensorMap tensors;
  std::string format;
};

ReadResult read_any_weights(const fs::path& path) {
  WeightFile file = read_weights(path);  // detects the format, unwraps {"state_dict": ..}, strips "module."
  return {std::move(file.tensors), to_string(file.format)};
}

// The weight file of a model folder: the usual names first, else the only weight-like file.
fs::path find_weights_in_folder(const fs::path& dir) {
  for (const char* name : {"model.safetensors", "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                           "pytorch_model.bin", "model.pt"}) {
    if (fs::is_regular_file(dir / name)) return dir / name;
  }
  std::vector<fs::path> candidates;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".safetensors" || ext == ".pt" || ext == ".pth" || ext == ".bin"))
      candidates.push_back(entry.path());
  }
  if (candidates.size() == 1) return candidates[0];
  throw Error(dir.string() + ": " +
              (candidates.empty() ? std::string("no weight file (model.safetensors, open_clip_model.safetensors, "
                                                "*.pt, *.bin) in the folder")
                                  : std::to_string(candidates.size()) + " weight files in the folder; pass one"));
}

ClipConfig config_from_option(const std::string& option) {
  for (const auto& name : ClipConfig::builtin_names())
    if (name == option) return ClipConfig::builtin(option);
  if (fs::is_regular_file(option)) {
    auto j = read_json(option);
    try {
      auto config = is_hf_config_json(j) ? config_from_hf(j) : ClipConfig::from_json(j);
      if (config.name.empty()) config.name = fs::path(option).stem().string();
      return config;
    } catch (const Error& e) {
      throw Error(option + ": " + e.what());
    }
  }
  return ClipConfig::builtin(option);  // OpenAI's spellings; else an Error listing the built-in names
}

}  // namespace


LoadedClip load_clip(const fs::path& path, const ClipLoadOptions& options) {
  if (!fs::exists(path)) throw Error("load_clip: no such file or folder: " + path.string());
  std::optional<ClipConfig> config;
  std::string config_source;
  fs::path weights_path = path;

  if (fs::is_directory(path)) {
    if (fs::is_regular_file(path / "open_clip_config.json")) {
      config = ClipConfig::from_file(path / "open_clip_config.json");
      config_source = "open_clip_config.json";
    } else if (fs::is_regular_file(path / "config.json")) {
      auto j = read_json(path / "config.json");
      if (is_hf_config_json(j)) {
        config = config_from_hf(j);
        config_source = "Hugging Face config.json";
        // The image processor's constants, when the folder has them.
        if (fs::is_regular_file(path / "preprocessor_config.json")) {
          auto p = read_json(path / "preprocessor_config.json");
          config->preprocess.mean = p.value("image_mean", config->preprocess.mean);
          config->preprocess.std = p.value("image_std", config->preprocess.std);
        }
      } else {
        try {
          config = ClipConfig::from_json(j);
        } catch (const Error& e) {
          throw Error((path / "config.json").string() + ": " + e.what());
        }
        config_source = "config.json";
      }
      if (config->name.empty() || config->name == "hf-clip") config->name = path.filename().string();
    }
    weights_path = find_weights_in_folder(path);
  }
  if (!options.config.empty()) {
    config = config_from_option(options.config);
    config_source = "config '" + options.config + "'";
  }

  ReadResult weights = read_any_weights(weights_path);  // the readers name the path in their errors
  const bool hf_names = is_hf_clip_state_dict(weights.tensors);
  TensorMap tensors = hf_names ? hf_to_openai(weights.tensors) : std::move(weights.tensors);
  if (!config) {
    try {
      config = infer_config(tensors);
    } catch (const Error& e) {
      throw Error(weights_path.string() + ": " + e.what());
    }
    config->name = weights_path.stem().string();
    config_source = "config inferred from tensor shapes";
  }

  LoadedClip loaded;
  loaded.config = *config;
  {
    // A strict load sets every parameter, so the random initial values need not be drawn; a lenient one
    // keeps them for what the file lacks.
    std::optional<SkipInit> skip;
    if (options.strict) skip.emplace();
    loaded.model = ClipModel(*config);
  }
  try {
    load_state_dict(*loaded.model, tensors, options.strict, {}, /*adopt=*/true);  // read just now
  } catch (const Error& e) {
    throw Error(weights_path.string() + " (" + config_source + "): " + e.what());
  }
  loaded.model->to(options.device, options.dtype);
  loaded.model->eval();
  for (auto& parameter : loaded.model->parameters()) parameter.requires_grad_(options.requires_grad);
  loaded.source_description = weights_path.string() + ": " + weights.format + ", " +
                              (hf_names ? "Hugging Face names" : "OpenAI names") + "; " + config_source;
  return loaded;
}

}  // namespace clipguide::clipnet
