// Hugging Face CLIPModel names and config.json -> OpenAI names and ClipConfig (see hf_clip.h).
// ref: huggingface/transformers src/transformers/models/clip/modeling_clip.py (transformers 5.24),
//      convert_clip_original_pytorch_to_hf.py for the correspondence.
#include "clipnet/hf_clip.h"

#include "core/error.h"

#include <ATen/ops/cat.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <regex>
#include <utility>

namespace clipguide::clipnet {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Per-layer names: HF suffix after "encoder.layers.N." -> OpenAI suffix after "resblocks.N.".
const std::vector<std::pair<std::string, std::string>>& layer_renames() {
  static const std::vector<std::pair<std::string, std::string>> kRenames = {
      {"self_attn.out_proj.", "attn.out_proj."},
      {"layer_norm1.", "ln_1."},
      {"layer_norm2.", "ln_2."},
      {"mlp.fc1.", "mlp.c_fc."},
      {"mlp.fc2.", "mlp.c_proj."},
  };
  return kRenames;
}

// Whole names outside the layers.
const std::map<std::string, std::string>& direct_renames() {
  static const std::map<std::string, std::string> kRenames = {
      {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
      {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
      {"text_model.final_layer_norm.weight", "ln_final.weight"},
      {"text_model.final_layer_norm.bias", "ln_final.bias"},
      {"vision_model.embeddings.class_embedding", "visual.class_embedding"},
      {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"},
      {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"},
      {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"},  // sic: HF's spelling
      {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"},
      {"vision_model.post_layernorm.weight", "visual.ln_post.weight"},
      {"vision_model.post_layernorm.bias", "visual.ln_post.bias"},
      {"logit_scale", "logit_scale"},
  };
  return kRenames;
}

}  // namespace

bool is_hf_clip_state_dict(const TensorMap& tensors) {
  for (const auto& [key, value] : tensors)
    if (starts_with(key, "text_model.") || starts_with(key, "vision_model.")) return true;
  return false;
}

TensorMap hf_to_openai(const TensorMap& hf) {
  static const std::regex kLayer(R"(^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.*)$)");
  TensorMap out;
  // q, k, v pieces per OpenAI key prefix ("transformer.resblocks.3.attn.in_proj_") and kind ("weight"/"bias").
  std::map<std::string, std::array<at::Tensor, 3>> qkv;

  for (const auto& [key, tensor] : hf) {
    if (key.size() >= 12 && key.compare(key.size() - 12, 12, "position_ids") == 0) continue;  // a buffer of aranges
    if (auto it = direct_renames().find(key); it != direct_renames().end()) {
      out[it->second] = tensor;
      continue;
    }
    // nn.Linear stores (out, in); OpenAI's projections are (in, out) matrices used as x @ proj.
    if (key == "visual_projection.weight") {
      out["visual.proj"] = tensor.t().contiguous();
      continue;
    }
    if (key == "text_projection.weight") {
      out["text_projection"] = tensor.t().contiguous();
      continue;
    }
    std::smatch m;
    if (std::regex_match(key, m, kLayer)) {
      const std::string prefix =
          (m[1] == "text_model" ? std::string("transformer.resblocks.") : std::string("visual.transformer.resblocks.")) +
          m[2].str() + ".";
      const std::string rest = m[3];
      bool renamed = false;
      for (const auto& [from, to] : layer_renames()) {
        if (starts_with(rest, from)) {
          out[prefix + to + rest.substr(from.size())] = tensor;
          renamed = true;
          break;
        }
      }
      if (renamed) continue;
      static const std::regex kProj(R"(^self_attn\.([qkv])_proj\.(weight|bias)$)");
      std::smatch pm;
      if (std::regex_match(rest, pm, kProj)) {
        const int slot = pm[1] == "q" ? 0 : pm[1] == "k" ? 1 : 2;
        qkv[prefix + "attn.in_proj_" + pm[2].str()][slot] = tensor;
        continue;
      }
    }
    out[key] = tensor;  // unknown: kept, so a strict load names it
  }
  // nn.MultiheadAttention's in_proj stacks q, k, v along the output dim.
  for (const auto& [key, parts] : qkv) {
    for (int i = 0; i < 3; ++i) {
      if (!parts[i].defined())
        throw Error("Hugging Face CLIP weights: '" + key + "' lacks its " + "qkv"[i] + "_proj part");
    }
    out[key] = at::cat({parts[0], parts[1], parts[2]}, 0);  // (3C, C) or (3C)
  }
  return out;
}

ClipConfig config_from_hf(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("Hugging Face CLIP config: expected a JSON object");
  if (j.contains("model_type") && j.at("model_type") != "clip")
    throw Error("Hugging Face CLIP config: model_type is '" + j.at("model_type").get<std::string>() + "', expected 'clip'");
  static const nlohmann::json kEmpty = nlohmann::json::object();
  const auto& t = j.contains("text_config") && j.at("text_config").is_object() ? j.at("text_config") : kEmpty;
  const auto& v = j.contains("vision_config") && j.at("vision_config").is_object() ? j.at("vision_config") : kEmpty;

  // save_pretrained writes only values that differ from the defaults, so absent keys take
  // transformers' CLIPTextConfig / CLIPVisionConfig / CLIPConfig defaults.
  ClipConfig config;
  config.embed_dim = j.value("projection_dim", int64_t{512});
  config.text.width = t.value("hidden_size", int64_t{512});
  config.text.heads = t.value("num_attention_heads", int64_t{8});
  config.text.layers = t.value("num_hidden_layers", int64_t{12});
  config.text.context_length = t.value("max_position_embeddings", int64_t{77});
  config.text.vocab_size = t.value("vocab_size", int64_t{49408});
  config.text.mlp_ratio = static_cast<double>(t.value("intermediate_size", int64_t{2048})) / config.text.width;

  const int64_t vision_width = v.value("hidden_size", int64_t{768});
  const int64_t vision_heads = v.value("num_attention_heads", int64_t{12});
  if (vision_width % vision_heads != 0)
    throw Error("Hugging Face CLIP config: vision hidden_size " + std::to_string(vision_width) +
                " not divisible by num_attention_heads " + std::to_string(vision_heads));
  config.vision.width = vision_width;
  config.vision.head_width = vision_width / vision_heads;
  config.vision.layers = {v.value("num_hidden_layers", int64_t{12})};
  config.vision.image_size = v.value("image_size", int64_t{224});
  config.vision.patch_size = v.value("patch_size", int64_t{32});
  config.vision.mlp_ratio = static_cast<double>(v.value("intermediate_size", int64_t{3072})) / vision_width;

  const std::string text_act = t.value("hidden_act", std::string("quick_gelu"));
  const std::string vision_act = v.value("hidden_act", std::string("quick_gelu"));
  if (text_act != vision_act)
    throw Error("Hugging Face CLIP config: text hidden_act '" + text_act + "' differs from vision hidden_act '" +
                vision_act + "'; clipnet uses one activation for both towers");
  if (text_act == "quick_gelu") config.quick_gelu = true;
  else if (text_act == "gelu") config.quick_gelu = false;
  else throw Error("Hugging Face CLIP config: unsupported hidden_act '" + text_act + "' (quick_gelu or gelu)");
  for (const auto* tower : {&t, &v}) {
    if (tower->contains("layer_norm_eps") && std::abs(tower->at("layer_norm_eps").get<double>() - 1e-5) > 1e-12)
      throw Error("Hugging Face CLIP config: layer_norm_eps other than 1e-5 is not supported");
  }
  config.name = j.value("_name_or_path", std::string("hf-clip"));
  if (config.name.empty()) config.name = "hf-clip";
  config.validate();
  return config;
}

}  // namespace clipguide::clipnet
