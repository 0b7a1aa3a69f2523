// ClipConfig JSON (open_clip's schema), the built-in OpenAI configs, and infer_config().
#include "clipnet/config.h"

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

namespace clipguide::clipnet {
namespace detail {
const std::vector<std::pair<std::string, std::string>>& builtin_model_configs();  // generated
}

namespace {

using nlohmann::json;

template <typename T>
T get_or(const json& object, const char* key, T fallback, const char* where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception& e) {
    throw Error(std::string("model config: ") + where + "." + key + ": " + e.what());
  }
}

}  // namespace

int64_t VisionConfig::heads() const {
  // ref: openai/CLIP clip/model.py (openai-clip 1.0.1) CLIP.__init__: vision_heads
  return is_resnet() ? width * 32 / head_width : width / head_width;
}

void ClipConfig::validate() const {
  auto fail = [&](const std::string& what) {
    throw Error("model config '" + name + "': " + what);
  };
  if (embed_dim <= 0) fail("embed_dim must be positive");
  if (vision.layers.size() != 1 && vision.layers.size() != 4)
    fail("vision_cfg.layers must be one depth (ViT) or four stage depths (ResNet), got " +
         std::to_string(vision.layers.size()) + " values");
  for (auto depth : vision.layers)
    if (depth <= 0) fail("vision_cfg.layers must be positive");
  if (vision.width <= 0 || vision.head_width <= 0) fail("vision_cfg.width and head_width must be positive");
  if (vision.is_resnet()) {
    if (vision.image_size % 32 != 0)
      fail("ResNet vision_cfg.image_size must be a multiple of 32, got " + std::to_string(vision.image_size));
    if ((vision.width * 32) % vision.head_width != 0) fail("ResNet vision_cfg.width * 32 not divisible by head_width");
  } else {
    if (vision.patch_size <= 0) fail("ViT vision_cfg.patch_size must be positive");
    if (vision.image_size % vision.patch_size != 0)
      fail("vision_cfg.image_size " + std::to_string(vision.image_size) + " is not a multiple of patch_size " +
           std::to_string(vision.patch_size));
    if (vision.width % vision.head_width != 0)
      fail("vision_cfg.width " + std::to_string(vision.width) + " not divisible by head_width " +
           std::to_string(vision.head_width));
  }
  if (text.width <= 0 || text.heads <= 0 || text.layers <= 0 || text.context_length <= 0 || text.vocab_size <= 0)
    fail("text_cfg sizes must be positive");
  if (text.width % text.heads != 0)
    fail("text_cfg.width " + std::to_string(text.width) + " not divisible by heads " + std::to_string(text.heads));
  if (preprocess.mean.size() != 3 || preprocess.std.size() != 3)
    fail("preprocess_cfg.mean and std need three values");
}

ClipConfig ClipConfig::from_json(const json& input) {
  if (!input.is_object()) throw Error("model config: expected a JSON object");
  // open_clip_config.json (Hugging Face hub repos of open_clip) wraps the model config.
  const json& j = input.contains("model_cfg") ? input.at("model_cfg") : input;
  if (!j.contains("vision_cfg") || !j.contains("text_cfg"))
    throw Error("model config: needs 'vision_cfg' and 'text_cfg' (open_clip's schema)");

  ClipConfig config;
  config.embed_dim = get_or<int64_t>(j, "embed_dim", config.embed_dim, "");
  config.quick_gelu = get_or<bool>(j, "quick_gelu", config.quick_gelu, "");
  config.name = get_or<std::string>(j, "name", "", "");

  const json& v = j.at("vision_cfg");
  auto& vision = config.vision;
  if (v.contains("layers")) {
    if (v.at("layers").is_array()) vision.layers = v.at("layers").get<std::vector<int64_t>>();
    else vision.layers = {v.at("layers").get<int64_t>()};
  }
  vision.width = get_or<int64_t>(v, "width", vision.width, "vision_cfg");
  vision.patch_size = vision.is_resnet() ? get_or<int64_t>(v, "patch_size", 0, "vision_cfg")
                                         : get_or<int64_t>(v, "patch_size", 16, "vision_cfg");  // open_clip default
  vision.head_width = get_or<int64_t>(v, "head_width", vision.head_width, "vision_cfg");
  vision.mlp_ratio = get_or<double>(v, "mlp_ratio", vision.mlp_ratio, "vision_cfg");
  if (v.contains("image_size") && v.at("image_size").is_array()) {
    auto sides = v.at("image_size").get<std::vector<int64_t>>();
    if (sides.size() != 2 || sides[0] != sides[1]) throw Error("model config: only square vision_cfg.image_size is supported");
    vision.image_size = sides[0];
  } else {
    vision.image_size = get_or<int64_t>(v, "image_size", vision.image_size, "vision_cfg");
  }
  for (const char* unsupported : {"timm_model_name", "ls_init_value", "attentional_pool"}) {
    if (v.contains(unsupported) && !v.at(unsupported).is_null() && v.at(unsupported) != false)
      throw Error(std::string("model config: vision_cfg.") + unsupported + " is not supported by clipnet");
  }

  const json& t = j.at("text_cfg");
  auto& text = config.text;
  text.context_length = get_or<int64_t>(t, "context_length", text.context_length, "text_cfg");
  text.vocab_size = get_or<int64_t>(t, "vocab_size", text.vocab_size, "text_cfg");
  text.width = get_or<int64_t>(t, "width", text.width, "text_cfg");
  text.heads = get_or<int64_t>(t, "heads", text.heads, "text_cfg");
  text.layers = get_or<int64_t>(t, "layers", text.layers, "text_cfg");
  text.mlp_ratio = get_or<double>(t, "mlp_ratio", text.mlp_ratio, "text_cfg");
  for (const char* unsupported : {"hf_model_name", "ls_init_value"}) {
    if (t.contains(unsupported) && !t.at(unsupported).is_null())
      throw Error(std::string("model config: text_cfg.") + unsupported + " is not supported by clipnet");
  }

  // open_clip_config.json keeps preprocess_cfg beside model_cfg; ours keeps it inside.
  const json* p = nullptr;
  if (j.contains("preprocess_cfg")) p = &j.at("preprocess_cfg");
  else if (input.contains("preprocess_cfg")) p = &input.at("preprocess_cfg");
  if (p) {
    auto& pre = config.preprocess;
    pre.mean = get_or<std::vector<double>>(*p, "mean", pre.mean, "preprocess_cfg");
    pre.std = get_or<std::vector<double>>(*p, "std", pre.std, "preprocess_cfg");
    pre.interpolation = get_or<std::string>(*p, "interpolation", pre.interpolation, "preprocess_cfg");
    pre.resize_mode = get_or<std::string>(*p, "resize_mode", pre.resize_mode, "preprocess_cfg");
  }
  config.validate();
  return config;
}

ClipConfig ClipConfig::from_json_text(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(std::string("model config: invalid JSON: ") + e.what());
  }
  return from_json(j);
}

ClipConfig ClipConfig::from_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("model config: cannot open " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    auto config = from_json_text(buffer.str());
    if (config.name.empty()) config.name = path.stem().string();
    return config;
  } catch (const Error& e) {
    throw Error(path.string() + ": " + e.what());
  }
}

json ClipConfig::to_json() const {
  json v = {{"image_size", vision.image_size},
            {"width", vision.width},
            {"patch_size", vision.patch_size},
            {"head_width", vision.head_width},
            {"mlp_ratio", vision.mlp_ratio}};
  if (vision.is_resnet()) v["layers"] = vision.layers;
  else v["layers"] = vision.layers.at(0);
  json t = {{"context_length", text.context_length}, {"vocab_size", text.vocab_size}, {"width", text.width},
            {"heads", text.heads},                   {"layers", text.layers},         {"mlp_ratio", text.mlp_ratio}};
  json p = {{"mean", preprocess.mean},
            {"std", preprocess.std},
            {"interpolation", preprocess.interpolation},
            {"resize_mode", preprocess.resize_mode}};
  json j = {{"embed_dim", embed_dim}, {"quick_gelu", quick_gelu}, {"vision_cfg", v}, {"text_cfg", t}, {"preprocess_cfg", p}};
  if (!name.empty()) j["name"] = name;
  return j;
}

std::string ClipConfig::to_json_text(int indent) const { return to_json().dump(indent); }

std::vector<std::string> ClipConfig::builtin_names() {
  std::vector<std::string> names;
  for (const auto& [name, text] : detail::builtin_model_configs()) names.push_back(name);
  return names;
}

ClipConfig ClipConfig::builtin(const std::string& requested) {
  // OpenAI's spelling ("ViT-B/32", "ViT-L/14@336px") names the same configs as open_clip's ("ViT-B-32").
  std::string name = requested;
  for (auto& ch : name)
    if (ch == '/') ch = '-';
  if (auto at = name.find("@"); at != std::string::npos) {
    name = name.substr(0, at) + "-" + name.substr(at + 1);
    if (name.size() > 2 && name.compare(name.size() - 2, 2, "px") == 0) name.resize(name.size() - 2);
  }
  for (const auto& [builtin_name, text] : detail::builtin_model_configs()) {
    if (builtin_name != name) continue;
    auto config = from_json_text(text);
    config.name = name;
    return config;
  }
  std::string known;
  for (const auto& n : builtin_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown model config '" + requested + "' (built in: " + known + ")");
}

// ref: openai/CLIP clip/model.py (openai-clip 1.0.1) build_model
ClipConfig infer_config(const TensorMap& sd) {
  auto require = [&](const std::string& key) -> const at::Tensor& {
    auto it = sd.find(key);
    if (it == sd.end()) throw Error("infer_config: state dict has no '" + key + "' (not an OpenAI-named CLIP state dict?)");
    return it->second;
  };
  auto starts_with = [](const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; };
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  // Number of distinct third name components under prefix: "transformer.resblocks.<i>.*" -> count of i.
  auto count_third = [&](const std::string& prefix) {
    std::set<std::string> ids;
    for (const auto& [key, value] : sd) {
      if (!starts_with(key, prefix)) continue;
      size_t a = key.find('.');
      size_t b = a == std::string::npos ? a : key.find('.', a + 1);
      if (b == std::string::npos) continue;
      size_t c = key.find('.', b + 1);
      ids.insert(key.substr(b + 1, c == std::string::npos ? std::string::npos : c - b - 1));
    }
    return static_cast<int64_t>(ids.size());
  };
  auto square_side = [](int64_t tokens, const std::string& key) {
    auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tokens - 1))));
    if (side * side + 1 != tokens)
      throw Error("infer_config: '" + key + "' has " + std::to_string(tokens) + " positions, not a square grid + 1");
    return side;
  };

  ClipConfig config;
  config.name = "inferred";
  config.quick_gelu = true;  // every OpenAI checkpoint uses QuickGELU
  auto& vision = config.vision;
  if (sd.count("visual.proj")) {
    const auto& conv1 = require("visual.conv1.weight");  // (width, 3, patch, patch)
    vision.width = conv1.size(0);
    int64_t layers = 0;
    for (const auto& [key, value] : sd)
      if (starts_with(key, "visual.") && ends_with(key, ".attn.in_proj_weight")) ++layers;
    vision.layers = {layers};
    vision.patch_size = conv1.size(-1);
    int64_t grid = square_side(require("visual.positional_embedding").size(0), "visual.positional_embedding");
    vision.image_size = vision.patch_size * grid;
    // OpenAI's models all have ratio 4; reading it from the first MLP also covers open_clip's variants.
    auto fc = sd.find("visual.transformer.resblocks.0.mlp.c_fc.weight");
    if (fc != sd.end()) vision.mlp_ratio = static_cast<double>(fc->second.size(0)) / vision.width;
  } else {
    vision.layers.clear();
    for (int b = 1; b <= 4; ++b) vision.layers.push_back(count_third("visual.layer" + std::to_string(b) + "."));
    vision.width = require("visual.layer1.0.conv1.weight").size(0);
    int64_t grid = square_side(require("visual.attnpool.positional_embedding").size(0), "visual.attnpool.positional_embedding");
    vision.patch_size = 0;
    vision.image_size = grid * 32;
  }
  config.embed_dim = require("text_projection").size(1);
  auto& text = config.text;
  text.context_length = require("positional_embedding").size(0);
  text.vocab_size = require("token_embedding.weight").size(0);
  text.width = require("ln_final.weight").size(0);
  text.heads = text.width / 64;
  text.layers = count_third("transformer.resblocks.");
  if (text.layers == 0) throw Error("infer_config: state dict has no 'transformer.resblocks.0.*' keys");
  auto fc = sd.find("transformer.resblocks.0.mlp.c_fc.weight");
  if (fc != sd.end()) text.mlp_ratio = static_cast<double>(fc->second.size(0)) / text.width;
  config.validate();
  return config;
}

void check_vocabulary_fits(int64_t tokenizer_vocab_size, const ClipConfig& config, const std::string& vocabulary,
                           const std::string& model) {
  if (tokenizer_vocab_size == config.text.vocab_size) return;
  // Fewer tokens than the embedding is a cut vocabulary (a truncated file), whose ids after the cut differ.
  throw Error("vocabulary '" + vocabulary + "' has " + std::to_string(tokenizer_vocab_size) + " tokens, but the model '" +
              model + "' embeds " + std::string(tokenizer_vocab_size > config.text.vocab_size ? "only " : "") +
              std::to_string(config.text.vocab_size) +
              ": use the vocabulary the model was trained with (a model folder's own vocab.json/merges.txt is found "
              "when --vocab is not given)");
}

}  // namespace clipguide::clipnet
