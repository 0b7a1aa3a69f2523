// VqganConfig from taming's YAML (yaml-cpp) or from state-dict shapes (see config.h).
// ref: taming-transformers-rom1504 0.0.6 taming/modules/diffusionmodules/model.py (Encoder, Decoder __init__)
#include "generators/vqgan/config.h"

#include "core/error.h"

#include <yaml-cpp/yaml.h>

#include <sstream>

namespace clipguide::generators::vqgan {

void VqganConfig::validate() const {
  auto fail = [](const std::string& what) { throw Error("invalid VQGAN config: " + what); };
  if (ch_mult.empty()) fail("ch_mult is empty");
  if (ch <= 0 || num_res_blocks <= 0 || z_channels <= 0 || n_embed <= 0 || embed_dim <= 0 || in_channels <= 0 ||
      out_ch <= 0) {
    fail("ch, num_res_blocks, z_channels, n_embed, embed_dim, in_channels and out_ch must be positive");
  }
  for (int64_t m : ch_mult) {
    // Every ResnetBlock and AttnBlock normalises with GroupNorm(32, C).
    if (m <= 0 || (ch * m) % 32 != 0) {
      fail("ch * ch_mult must be a positive multiple of 32 (GroupNorm(32)); got ch " + std::to_string(ch) +
           ", multiplier " + std::to_string(m));
    }
  }
  if (static_cast<int64_t>(encoder_attn.size()) != num_levels() ||
      static_cast<int64_t>(decoder_attn.size()) != num_levels()) {
    fail("encoder_attn and decoder_attn need one flag per level (" + std::to_string(num_levels()) + ")");
  }
  if (quantizer == QuantizerKind::kGumbel && z_channels != embed_dim) {
    // GumbelQuantize's proj takes z_channels inputs but receives quant_conv's embed_dim outputs.
    fail("GumbelVQ needs z_channels == embed_dim; got " + std::to_string(z_channels) + " and " +
         std::to_string(embed_dim));
  }
}

void set_attention_from_resolutions(VqganConfig& config, int64_t resolution,
                                    const std::vector<int64_t>& attn_resolutions) {
  auto has = [&](int64_t r) {
    for (int64_t a : attn_resolutions) {
      if (a == r) return true;
    }
    return false;
  };
  const int64_t levels = config.num_levels();
  config.encoder_attn.assign(levels, false);
  config.decoder_attn.assign(levels, false);
  int64_t res = resolution;
  for (int64_t i = 0; i < levels; ++i) {
    config.encoder_attn[i] = has(res);
    if (i != levels - 1) res /= 2;
  }
  res = resolution / (int64_t{1} << (levels - 1));
  for (int64_t i = levels - 1; i >= 0; --i) {
    config.decoder_attn[i] = has(res);
    if (i != 0) res *= 2;
  }
}

// ---------------------------------------------------------------------------------------------------------
// YAML

namespace {

constexpr const char* kVqModelTarget = "taming.models.vqgan.VQModel";
constexpr const char* kGumbelTarget = "taming.models.vqgan.GumbelVQ";
// A transformer whose first stage is the VQGAN (VQGAN+CLIP accepts these configs too).
constexpr const char* kNet2NetTarget = "taming.models.cond_transformer.Net2NetTransformer";

struct YamlReader {
  std::filesystem::path path;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("VQGAN config " + path.string() + ": " + what);
  }
  YAML::Node child(const YAML::Node& node, const std::string& key, const std::string& where) const {
    if (!node.IsMap() || !node[key]) fail("missing '" + where + key + "'");
    return node[key];
  }
  // A child that holds keys of its own (model, params, ddconfig): a mapping, or a clear error.
  YAML::Node section(const YAML::Node& node, const std::string& key, const std::string& where) const {
    auto value = child(node, key, where);
    if (!value.IsMap()) fail("'" + where + key + "' is not a mapping of keys (got " + kind(value) + ")");
    return value;
  }
  static std::string kind(const YAML::Node& node) {
    if (node.IsScalar()) return "the value '" + node.Scalar().substr(0, 40) + "'";
    if (node.IsSequence()) return "a list";
    return "nothing";
  }
  template <typename T>
  T scalar(const YAML::Node& node, const std::string& key, const std::string& where) const {
    auto value = child(node, key, where);
    try {
      return value.as<T>();
    } catch (const YAML::Exception& e) {
      fail("'" + where + key + "' has the wrong type: " + e.msg);
    }
  }
  template <typename T>
  T scalar_or(const YAML::Node& node, const std::string& key, T fallback, const std::string& where) const {
    if (!node.IsMap() || !node[key] || node[key].IsNull()) return fallback;
    return scalar<T>(node, key, where);
  }
  std::vector<int64_t> int_list(const YAML::Node& node, const std::string& key, const std::string& where) const {
    auto value = child(node, key, where);
    if (!value.IsSequence()) fail("'" + where + key + "' is not a list");
    std::vector<int64_t> out;
    try {
      for (const auto& item : value) out.push_back(item.as<int64_t>());
    } catch (const YAML::Exception& e) {
      fail("'" + where + key + "' is not a list of integers: " + e.msg);
    }
    return out;
  }
};

}  // namespace

namespace {

VqganConfig read_config(const YamlReader& r, const YAML::Node& root);

}  // namespace

VqganConfig read_vqgan_yaml(const std::filesystem::path& path) {
  YamlReader r{path};
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::BadFile&) {
    r.fail("cannot open the file");
  } catch (const YAML::Exception& e) {
    r.fail("not valid YAML: " + e.msg);
  }
  try {
    return read_config(r, root);
  } catch (const YAML::Exception& e) {  // what the checks below do not foresee is still one clear line
    r.fail(e.msg);
  }
}

namespace {

VqganConfig read_config(const YamlReader& r, const YAML::Node& root) {
  auto model = r.section(root, "model", "");
  auto target = r.scalar<std::string>(model, "target", "model.");
  std::string where_model = "model.";
  if (target == kNet2NetTarget) {
    model = r.section(r.section(model, "params", "model."), "first_stage_config", "model.params.");
    where_model = "model.params.first_stage_config.";
    target = r.scalar<std::string>(model, "target", where_model);
  }
  VqganConfig config;
  if (target == kVqModelTarget) {
    config.quantizer = QuantizerKind::kVectorQuantizer;
  } else if (target == kGumbelTarget) {
    config.quantizer = QuantizerKind::kGumbel;
  } else {
    r.fail(where_model + "target '" + target + "' is not supported (supported: " + kVqModelTarget + ", " +
           kGumbelTarget + ", " + kNet2NetTarget + " with one of those as first stage)");
  }
  const std::string where_params = where_model + "params.";
  auto params = r.section(model, "params", where_model);
  if (params["remap"] && !params["remap"].IsNull()) r.fail(where_params + "remap (index remapping) is not supported");
  config.n_embed = r.scalar<int64_t>(params, "n_embed", where_params);
  config.embed_dim = r.scalar<int64_t>(params, "embed_dim", where_params);
  auto dd = r.section(params, "ddconfig", where_params);
  const std::string where = where_params + "ddconfig.";
  config.ch = r.scalar<int64_t>(dd, "ch", where);
  config.ch_mult = r.int_list(dd, "ch_mult", where);
  config.num_res_blocks = r.scalar<int64_t>(dd, "num_res_blocks", where);
  config.z_channels = r.scalar<int64_t>(dd, "z_channels", where);
  config.in_channels = r.scalar_or<int64_t>(dd, "in_channels", 3, where);
  config.out_ch = r.scalar_or<int64_t>(dd, "out_ch", 3, where);
  config.double_z = r.scalar_or<bool>(dd, "double_z", true, where);  // taming's Encoder default
  config.resamp_with_conv = r.scalar_or<bool>(dd, "resamp_with_conv", true, where);
  const int64_t resolution = r.scalar<int64_t>(dd, "resolution", where);
  if (config.ch_mult.empty()) r.fail("'" + where + "ch_mult' is empty");
  set_attention_from_resolutions(config, resolution, r.int_list(dd, "attn_resolutions", where));
  try {
    config.validate();
  } catch (const Error& e) {
    r.fail(e.what());
  }
  return config;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Inference from shapes

VqganConfig infer_vqgan_config(const clipguide::TensorMap& sd) {
  auto has = [&](const std::string& key) { return sd.count(key) != 0; };
  auto get = [&](const std::string& key) -> const at::Tensor& {
    auto it = sd.find(key);
    if (it == sd.end()) {
      throw Error("cannot infer the VQGAN architecture: the weights have no '" + key +
                  "' (not a taming-transformers VQModel/GumbelVQ state dict?)");
    }
    return it->second;
  };
  auto dim = [&](const std::string& key, int64_t d, int64_t ndim) {
    const auto& t = get(key);
    if (t.dim() != ndim) {
      throw Error("cannot infer the VQGAN architecture: '" + key + "' has shape " + shape_str(t.sizes()) +
                  ", expected " + std::to_string(ndim) + " dimensions");
    }
    return t.size(d);
  };

  VqganConfig config;
  config.ch = dim("encoder.conv_in.weight", 0, 4);
  config.in_channels = dim("encoder.conv_in.weight", 1, 4);
  config.ch_mult.clear();
  for (int64_t i = 0; has("encoder.down." + std::to_string(i) + ".block.0.conv1.weight"); ++i) {
    const std::string key = "encoder.down." + std::to_string(i) + ".block.0.conv1.weight";
    const int64_t out = dim(key, 0, 4);
    if (out % config.ch != 0) {
      throw Error("cannot infer the VQGAN architecture: '" + key + "' has " + std::to_string(out) +
                  " output channels, not a multiple of ch = " + std::to_string(config.ch));
    }
    config.ch_mult.push_back(out / config.ch);
  }
  if (config.ch_mult.empty()) get("encoder.down.0.block.0.conv1.weight");  // throws, naming the key
  config.num_res_blocks = 0;
  while (has("encoder.down.0.block." + std::to_string(config.num_res_blocks) + ".conv1.weight")) {
    ++config.num_res_blocks;
  }
  const int64_t levels = config.num_levels();
  config.encoder_attn.assign(levels, false);
  config.decoder_attn.assign(levels, false);
  for (int64_t i = 0; i < levels; ++i) {
    config.encoder_attn[i] = has("encoder.down." + std::to_string(i) + ".attn.0.q.weight");
    config.decoder_attn[i] = has("decoder.up." + std::to_string(i) + ".attn.0.q.weight");
  }
  config.z_channels = dim("decoder.conv_in.weight", 1, 4);
  config.out_ch = dim("decoder.conv_out.weight", 0, 4);
  config.double_z = dim("encoder.conv_out.weight", 0, 4) == 2 * config.z_channels;
  config.resamp_with_conv = levels == 1 || has("encoder.down.0.downsample.conv.weight");
  if (has("quantize.embed.weight") || has("quantize.proj.weight")) {
    config.quantizer = QuantizerKind::kGumbel;
    config.n_embed = dim("quantize.embed.weight", 0, 2);
    config.embed_dim = dim("quantize.embed.weight", 1, 2);
  } else {
    config.quantizer = QuantizerKind::kVectorQuantizer;
    config.n_embed = dim("quantize.embedding.weight", 0, 2);
    config.embed_dim = dim("quantize.embedding.weight", 1, 2);
  }
  config.validate();
  return config;
}

}  // namespace clipguide::generators::vqgan
