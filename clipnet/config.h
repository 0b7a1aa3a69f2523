// ClipConfig: the architecture of a CLIP model (OpenAI's ViT or ModifiedResNet image tower, causal text
// transformer) plus the preprocessing constants that travel with its weights. JSON in open_clip's schema;
// the nine OpenAI models are built in; infer_config() reads sizes off a state dict like OpenAI's build_model.
#pragma once

#include "core/io/tensor_map.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace clipguide::clipnet {

// Image tower. layers has one entry for a VisionTransformer and four for a ModifiedResNet.
struct VisionConfig {
  int64_t image_size = 224;               // input side in pixels (square)
  std::vector<int64_t> layers = {12};     // ViT: {depth}; ResNet: {stage1, stage2, stage3, stage4} blocks
  int64_t width = 768;                    // ViT: token width; ResNet: stem width (features are 32x this)
  int64_t patch_size = 32;                // ViT patch side; 0 for ResNet
  int64_t head_width = 64;                // channels per attention head (heads = width / head_width)
  double mlp_ratio = 4.0;                 // ViT MLP hidden width / width

  bool is_resnet() const { return layers.size() == 4; }
  // ViT: width / head_width; ResNet attention pool: width * 32 / head_width (OpenAI's rule).
  int64_t heads() const;
};

// Causal text transformer.
struct TextConfig {
  int64_t context_length = 77;  // tokens per sequence, including SOT and EOT
  int64_t vocab_size = 49408;   // BPE vocabulary size
  int64_t width = 512;          // token width
  int64_t heads = 8;            // attention heads
  int64_t layers = 12;          // residual attention blocks
  double mlp_ratio = 4.0;       // MLP hidden width / width
};

// How pixels must be prepared for this model (consumed by clipnet/preprocess).
struct PreprocessConfig {
  std::vector<double> mean = {0.48145466, 0.4578275, 0.40821073};   // per-channel mean (OpenAI's)
  std::vector<double> std = {0.26862954, 0.26130258, 0.27577711};   // per-channel std (OpenAI's)
  std::string interpolation = "bicubic";                            // resize filter
  std::string resize_mode = "shortest";                             // "shortest" side then centre crop, ...
};

struct ClipConfig {
  int64_t embed_dim = 512;      // joint embedding width
  VisionConfig vision;          // image tower
  TextConfig text;              // text tower
  bool quick_gelu = false;      // x * sigmoid(1.702 x) (OpenAI's weights) instead of exact GELU
  PreprocessConfig preprocess;  // normalisation and resizing constants
  std::string name;             // model name, or where the config came from

  // open_clip's schema: {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "preprocess_cfg"}. Also accepts
  // the open_clip_config.json wrapper {"model_cfg": {...}, "preprocess_cfg": {...}}. Throws Error on bad values.
  static ClipConfig from_json(const nlohmann::json& json);
  static ClipConfig from_json_text(const std::string& text);
  static ClipConfig from_file(const std::filesystem::path& path);
  nlohmann::json to_json() const;
  std::string to_json_text(int indent = 2) const;

  // The shipped configs (clipnet/model_configs/*.json): "RN50", ..., "ViT-L-14-336"; OpenAI's spellings
  // ("ViT-B/32", "ViT-L/14@336px") also work. Throws Error listing the names when unknown.
  static ClipConfig builtin(const std::string& name);
  static std::vector<std::string> builtin_names();

  // Throws Error when sizes are inconsistent (non-divisible heads, ViT without patch size, ...).
  void validate() const;
};

// Sizes read from an OpenAI-named state dict, exactly as OpenAI's build_model does (heads = width / 64,
// QuickGELU). Throws Error naming the first missing key.
ClipConfig infer_config(const TensorMap& openai_state_dict);

// Throws Error, naming both counts, unless a tokenizer with `tokenizer_vocab_size` ids (read from `vocabulary`)
// has exactly as many ids as the text tower of `config` (the model at `model`) embeds: more can produce ids
// the model has no embedding for, fewer is a cut or foreign vocabulary whose ids do not mean the model's.
void check_vocabulary_fits(int64_t tokenizer_vocab_size, const ClipConfig& config, const std::string& vocabulary,
                           const std::string& model);

}  // namespace clipguide::clipnet
