// load_state_dict() by parameter name and load_clip() for every supported file and folder layout
// (see checkpoint.h). File formats themselves are clipnet/io's business; this file only sees TensorMaps.
#include "clipnet/checkpoint.h"

#include "clipnet/error.h"
#include "clipnet/hf_clip.h"
#include "clipnet/io/weights.h"

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

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string last_component(const std::string& key) {
  auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

// Entries of OpenAI's (and Hugging Face's) files that are not weights: model attributes saved beside the
// parameters (TorchScript keeps attn_mask as an attribute of each block) and index buffers.
bool is_non_weight_key(const std::string& key) {
  static const std::set<std::string> kNames = {"input_resolution", "context_length", "vocab_size", "attn_mask",
                                               "position_ids"};
  return kNames.count(last_component(key)) > 0;
}

std::string join_keys(const std::vector<std::string>& keys, size_t limit = 8) {
  std::string out;
  for (size_t i = 0; i < keys.size() && i < limit; ++i) out += (i ? ", '" : "'") + keys[i] + "'";
  if (keys.size() > limit) out += " and " + std::to_string(keys.size() - limit) + " more";
  return out;
}

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

void check_finite(const TensorMap& tensors, const std::string& source) {
  at::NoGradGuard no_grad;
  for (const auto& [key, tensor] : tensors) {
    if (!tensor.defined() || !at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) continue;
    // One reduction pass (min and max carry a NaN or an infinity through); the count only for the message.
    const auto [lo, hi] = at::aminmax(tensor);
    if (std::isfinite(lo.item<double>()) && std::isfinite(hi.item<double>())) continue;
    const int64_t bad = tensor.numel() - at::isfinite(tensor).sum().item<int64_t>();
    if (bad > 0) {
      throw Error(source + ": tensor '" + key + "' holds " + std::to_string(bad) + " NaN or infinite value(s) of " +
                  std::to_string(tensor.numel()) + ": the weights are corrupt");
    }
  }
}

LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors, bool strict,
                           const std::function<void(const LoadReport&)>& check) {
  LoadReport report;
  std::map<std::string, at::Tensor> destinations;  // parameters and buffers by dotted name
  for (const auto& item : module.named_parameters(/*recurse=*/true)) destinations[item.key()] = item.value();
  for (const auto& item : module.named_buffers(/*recurse=*/true)) destinations[item.key()] = item.value();

  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (destination, source)
  for (const auto& [key, tensor] : tensors) {
    auto it = destinations.find(key);
    if (it == destinations.end()) {
      (is_non_weight_key(key) ? report.ignored_keys : report.unexpected_keys).push_back(key);
      continue;
    }
    if (!tensor.sizes().equals(it->second.sizes()))
      throw Error("key '" + key + "': got " + shape_str(tensor.sizes()) + ", expected " + shape_str(it->second.sizes()));
    copies.emplace_back(it->second, tensor);
  }
  for (const auto& [key, tensor] : destinations) {
    // PyTorch's BatchNorm also accepts files from before it counted batches; the count is unused in eval.
    if (!tensors.count(key) && !ends_with(key, "num_batches_tracked")) report.missing_keys.push_back(key);
  }
  if (check) {
    check(report);
  } else if (strict && (!report.missing_keys.empty() || !report.unexpected_keys.empty())) {
    std::string message = "state dict does not match the model:";
    if (!report.missing_keys.empty())
      message += " missing " + std::to_string(report.missing_keys.size()) + " key(s) " + join_keys(report.missing_keys) + ";";
    if (!report.unexpected_keys.empty())
      message += " unexpected " + std::to_string(report.unexpected_keys.size()) + " key(s) " +
                 join_keys(report.unexpected_keys) + ";";
    message.pop_back();
    throw Error(message);
  }
  TensorMap loaded_tensors;
  for (const auto& [key, tensor] : tensors)
    if (destinations.count(key)) loaded_tensors.emplace(key, tensor);
  check_finite(loaded_tensors, "state dict");
  at::NoGradGuard no_grad;
  for (auto& [destination, source] : copies) destination.copy_(source);  // casts dtype (OpenAI's fp16) and device
  report.loaded = static_cast<int64_t>(copies.size());
  return report;
}

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
  loaded.model = ClipModel(*config);
  try {
    load_state_dict(*loaded.model, tensors, options.strict);
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
