// ModelAndDiffusionConfig from JSON (nlohmann) or from state-dict shapes (see config.h).
// ref: guided-diffusion-sdk 1.0.0 guided_diffusion/script_util.py, unet.py (UNetModel.__init__)
#include "generators/diffusion/config.h"

#include "core/error.h"
#include "core/io/file_util.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace clipguide::generators::diffusion {

int64_t UNetConfig::level_channels(int64_t level) const {
  return static_cast<int64_t>(channel_mult.at(level) * static_cast<double>(model_channels));
}

void UNetConfig::validate() const {
  auto fail = [](const std::string& what) { throw Error("invalid diffusion model config: " + what); };
  if (channel_mult.empty()) fail("channel_mult is empty");
  if (model_channels <= 0 || num_res_blocks <= 0 || in_channels <= 0 || out_channels <= 0 || image_size <= 0)
    fail("image_size, num_channels, num_res_blocks, in_channels and out_channels must be positive");
  for (int64_t level = 0; level < levels(); ++level) {
    const int64_t c = level_channels(level);
    if (!(channel_mult[level] > 0) || c % 32 != 0) {  // every block normalises with GroupNorm(32, C)
      fail("channel_mult[" + std::to_string(level) + "] * num_channels must be a positive multiple of 32 "
           "(GroupNorm(32)); got " + std::to_string(channel_mult[level]) + " * " + std::to_string(model_channels));
    }
  }
  for (int64_t ds : attention_ds) {
    if (ds <= 0) fail("attention_resolutions must name resolutions dividing image_size " + std::to_string(image_size));
  }
  // Attention runs at every level with attention and in the middle block (the last level's channels).
  std::vector<int64_t> attention_channels = {level_channels(levels() - 1)};
  for (int64_t level = 0, ds = 1; level < levels(); ++level, ds *= 2) {
    if (std::count(attention_ds.begin(), attention_ds.end(), ds)) attention_channels.push_back(level_channels(level));
  }
  for (int64_t c : attention_channels) {
    if (num_head_channels > 0 && c % num_head_channels != 0)
      fail("attention channels " + std::to_string(c) + " not divisible by num_head_channels " +
           std::to_string(num_head_channels));
    if (num_head_channels <= 0) {
      const int64_t heads_down = num_heads, heads_up = num_heads_upsample > 0 ? num_heads_upsample : num_heads;
      if (heads_down <= 0 || c % heads_down != 0 || c % heads_up != 0)
        fail("attention channels " + std::to_string(c) + " not divisible by num_heads " + std::to_string(heads_down) +
             (heads_up != heads_down ? " / num_heads_upsample " + std::to_string(heads_up) : ""));
    }
  }
}

namespace {

using nlohmann::json;

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    parts.push_back(part);
  }
  return parts;
}

// Reads one model_config value, naming the source and key when it is not of the expected kind.
class ConfigReader {
 public:
  ConfigReader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const json& value, const std::string& expected) const {
    throw Error(source_ + ": '" + key + "' is " + value.dump() + ", expected " + expected);
  }
  double number(const std::string& key, const json& v) const {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      try {
        size_t used = 0;
        const double d = std::stod(v.get<std::string>(), &used);
        if (used == v.get<std::string>().size() && std::isfinite(d)) return d;
      } catch (const std::exception&) {
      }
    }
    fail(key, v, "a number");
  }
  int64_t integer(const std::string& key, const json& v) const {
    const double d = number(key, v);
    if (d != std::floor(d) || std::abs(d) > 1e15) fail(key, v, "an integer");
    return static_cast<int64_t>(d);
  }
  bool boolean(const std::string& key, const json& v) const {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_number_integer() && (v.get<int64_t>() == 0 || v.get<int64_t>() == 1)) return v.get<int64_t>() == 1;
    fail(key, v, "true or false");
  }
  std::string text(const std::string& key, const json& v) const {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());  // Disco writes timestep_respacing: 250
    fail(key, v, "a string");
  }
  // "32,16,8", "32, 16, 8", [32, 16, 8] or 32.
  std::vector<double> numbers(const std::string& key, const json& v) const {
    std::vector<double> out;
    if (v.is_array()) {
      for (const auto& e : v) out.push_back(number(key, e));
    } else if (v.is_string()) {
      for (const auto& part : split_list(v.get<std::string>())) out.push_back(number(key, json(part)));
    } else {
      out.push_back(number(key, v));
    }
    return out;
  }

 private:
  std::string source_;
};

// create_model's channel_mult for an image size, when channel_mult is "".
std::vector<double> default_channel_mult(int64_t image_size, const std::string& source) {
  switch (image_size) {
    case 512: return {0.5, 1, 1, 2, 2, 4, 4};
    case 256: return {1, 1, 2, 2, 4, 4};
    case 128: return {1, 1, 2, 3, 4};
    case 64: return {1, 2, 3, 4};
    default:
      throw Error(source + ": 'channel_mult' is \"\" and image_size " + std::to_string(image_size) +
                  " has no default (64, 128, 256 or 512); give channel_mult");
  }
}

}  // namespace

ModelAndDiffusionConfig parse_model_config(const std::string& json_text, const std::string& source,
                                           ModelAndDiffusionConfig base) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    throw Error(source + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!root.is_object()) throw Error(source + ": expected a JSON object of model_and_diffusion_defaults() keys");
  ConfigReader read(source);
  auto& unet = base.unet;
  auto& diffusion = base.diffusion;
  // Resolved after all keys are read: they depend on image_size.
  std::vector<double> attention_resolutions;
  bool attention_given = false, mult_given = false, learn_sigma_given = false, learn_sigma = unet.learn_sigma();
  bool sigma_small = false;
  const int64_t base_image_size = unet.image_size;
  for (const auto& [key, v] : root.items()) {
    if (key == "image_size") unet.image_size = read.integer(key, v);
    else if (key == "num_channels") unet.model_channels = read.integer(key, v);
    else if (key == "num_res_blocks") unet.num_res_blocks = read.integer(key, v);
    else if (key == "num_heads") unet.num_heads = read.integer(key, v);
    else if (key == "num_heads_upsample") unet.num_heads_upsample = read.integer(key, v);
    else if (key == "num_head_channels") unet.num_head_channels = read.integer(key, v);
    else if (key == "attention_resolutions") { attention_resolutions = read.numbers(key, v); attention_given = true; }
    else if (key == "channel_mult") {
      mult_given = !(v.is_string() && v.get<std::string>().empty());
      if (mult_given) unet.channel_mult = read.numbers(key, v);
    }
    else if (key == "class_cond") unet.num_classes = read.boolean(key, v) ? 1000 : 0;  // ImageNet's classes
    else if (key == "use_scale_shift_norm") unet.use_scale_shift_norm = read.boolean(key, v);
    else if (key == "resblock_updown") unet.resblock_updown = read.boolean(key, v);
    else if (key == "use_new_attention_order") unet.use_new_attention_order = read.boolean(key, v);
    else if (key == "learn_sigma") { learn_sigma = read.boolean(key, v); learn_sigma_given = true; }
    else if (key == "sigma_small") sigma_small = read.boolean(key, v);
    else if (key == "diffusion_steps") diffusion.diffusion_steps = read.integer(key, v);
    else if (key == "noise_schedule") {
      const auto name = read.text(key, v);
      if (name == "linear") diffusion.noise_schedule = BetaSchedule::kLinear;
      else if (name == "cosine") diffusion.noise_schedule = BetaSchedule::kCosine;
      else read.fail(key, v, "\"linear\" or \"cosine\"");
    }
    else if (key == "timestep_respacing") diffusion.timestep_respacing = read.text(key, v);
    else if (key == "predict_xstart") diffusion.mean_type = read.boolean(key, v) ? MeanType::kStartX : MeanType::kEpsilon;
    else if (key == "rescale_timesteps") diffusion.rescale_timesteps = read.boolean(key, v);
    else if (key == "use_fp16" || key == "use_checkpoint" || key == "use_kl" || key == "rescale_learned_sigmas") read.boolean(key, v);
    else if (key == "dropout") read.number(key, v);
    else throw Error(source + ": unknown key '" + key + "' (expected keys of guided_diffusion's model_and_diffusion_defaults())");
  }
  if (unet.image_size <= 0) throw Error(source + ": 'image_size' must be positive");
  // "", or absent with another image size: create_model's multipliers for the image size.
  if (!mult_given && (root.contains("channel_mult") || unet.image_size != base_image_size))
    unet.channel_mult = default_channel_mult(unet.image_size, source);
  if (!attention_given) {  // the base's resolutions (not its downsample rates) at this image size
    for (int64_t ds : unet.attention_ds) attention_resolutions.push_back(static_cast<double>(base_image_size / ds));
  }
  unet.attention_ds.clear();
  for (double r : attention_resolutions) {
    const auto res = static_cast<int64_t>(r);
    if (res <= 0 || r != static_cast<double>(res) || unet.image_size % res != 0)
      throw Error(source + ": 'attention_resolutions' holds " + std::to_string(r) +
                  ", expected positive integers dividing image_size " + std::to_string(unet.image_size));
    unet.attention_ds.push_back(unet.image_size / res);  // create_model: image_size // res
  }
  if (learn_sigma_given || root.contains("sigma_small")) {
    unet.out_channels = learn_sigma ? 2 * unet.in_channels : unet.in_channels;
    diffusion.variance_type = learn_sigma ? VarianceType::kLearnedRange
                                          : (sigma_small ? VarianceType::kFixedSmall : VarianceType::kFixedLarge);
  }
  if (diffusion.diffusion_steps <= 0) throw Error(source + ": 'diffusion_steps' must be positive");
  try {
    unet.validate();
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  return base;
}

ModelAndDiffusionConfig read_model_config(const std::filesystem::path& path, ModelAndDiffusionConfig base) {
  const auto file = io::read_file(path);
  return parse_model_config(std::string(reinterpret_cast<const char*>(file.bytes()), file.size), path.string(),
                            std::move(base));
}

// ---------------------------------------------------------------------------------------------------------
UNetConfig infer_unet_config(const clipguide::TensorMap& sd, UNetConfig config) {
  auto fail = [](const std::string& what) {
    throw Error("cannot infer the diffusion model's architecture: " + what +
                " (not a guided-diffusion UNetModel state dict?)");
  };
  auto has = [&](const std::string& key) { return sd.count(key) != 0; };
  auto dim = [&](const std::string& key, int64_t d, int64_t ndim) {
    auto it = sd.find(key);
    if (it == sd.end()) fail("the weights have no '" + key + "'");
    if (it->second.dim() != ndim)
      fail("'" + key + "' has shape " + shape_str(it->second.sizes()) + ", expected " + std::to_string(ndim) + " dimensions");
    return it->second.size(d);
  };
  // The highest block index under `prefix` ("input_blocks.") plus one.
  auto block_count = [&](const std::string& prefix) {
    int64_t count = 0;
    for (const auto& [key, _] : sd) {
      if (key.rfind(prefix, 0) != 0) continue;
      const auto rest = key.substr(prefix.size());
      try {
        count = std::max<int64_t>(count, std::stoll(rest.substr(0, rest.find('.'))) + 1);
      } catch (const std::exception&) {
        fail("odd key '" + key + "'");
      }
    }
    return count;
  };
  auto block = [](const std::string& half, int64_t i) { return half + "." + std::to_string(i) + "."; };

  config.model_channels = dim("time_embed.0.weight", 1, 2);
  config.in_channels = dim("input_blocks.0.0.weight", 1, 4);
  config.out_channels = dim("out.2.weight", 0, 4);
  config.num_classes = has("label_emb.weight") ? dim("label_emb.weight", 0, 2) : 0;
  const int64_t n_in = block_count("input_blocks."), n_out = block_count("output_blocks.");
  // Output block k ends a level (has an upsampling layer after its ResBlock and attention) when a layer past
  // index 0 is a ResBlock (resblock_updown) or an Upsample conv.
  auto is_up = [&](int64_t k) {
    for (int layer = 1; layer <= 2; ++layer) {
      const auto p = block("output_blocks", k) + std::to_string(layer) + ".";
      if (has(p + "in_layers.0.weight") || has(p + "conv.weight")) return true;
    }
    return false;
  };
  int64_t n = -1;  // res blocks per level
  for (int64_t k = 0; k < n_out && n < 0; ++k)
    if (is_up(k)) n = k;
  if (n < 0) {  // one level, or parameterless upsampling (nearest, no conv): find the first downsampling block
    for (int64_t k = 1; k < n_in && n < 0; ++k) {
      const auto p = block("input_blocks", k);
      if (has(p + "0.op.weight") || !has(p + "0.in_layers.0.weight")) n = k - 1;
    }
    if (n < 0) n = n_out - 1;
  }
  if (n <= 0 || n_out % (n + 1) != 0 || n_in != n_out)
    fail("input_blocks (" + std::to_string(n_in) + ") and output_blocks (" + std::to_string(n_out) +
         ") do not make levels of equal res-block counts");
  config.num_res_blocks = n;
  const int64_t levels = n_out / (n + 1);
  config.channel_mult.clear();
  config.attention_ds.clear();
  for (int64_t level = 0, ds = 1; level < levels; ++level, ds *= 2) {
    const auto first = block("input_blocks", 1 + level * (n + 1));
    const int64_t c = dim(first + "0.out_layers.3.weight", 0, 4);
    config.channel_mult.push_back(static_cast<double>(c) / static_cast<double>(config.model_channels));
    if (has(first + "1.qkv.weight")) config.attention_ds.push_back(ds);
  }
  const auto first = block("input_blocks", 1);
  config.use_scale_shift_norm = dim(first + "0.emb_layers.1.weight", 0, 2) == 2 * config.level_channels(0);
  if (levels > 1) {
    const auto down = block("input_blocks", n + 1);
    config.resblock_updown = has(down + "0.in_layers.0.weight");
    config.conv_resample = config.resblock_updown || has(down + "0.op.weight");
  }
  // The image size create_model pairs with this channel_mult (it names the attention resolutions).
  for (int64_t size : {64, 128, 256, 512}) {
    if (default_channel_mult(size, "") == config.channel_mult) config.image_size = size;
  }
  config.validate();
  return config;
}

}  // namespace clipguide::generators::diffusion
