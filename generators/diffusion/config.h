// The architecture of an OpenAI guided-diffusion model and its diffusion process, as the keys of
// guided_diffusion's model_and_diffusion_defaults() (Disco Diffusion's `model_config`): from a JSON object, or
// inferred from a state dict's shapes where they tell, the rest defaulting to the 256x256 unconditional
// model's settings. ref: guided-diffusion-sdk 1.0.0 guided_diffusion/script_util.py (create_model,
// create_gaussian_diffusion).
#pragma once

#include "core/io/tensor_map.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace clipguide::generators::diffusion {

// UNetModel's constructor arguments. Defaults: 256x256_diffusion_uncond.pt as Disco loads it.
struct UNetConfig {
  int64_t image_size = 256;        // the training resolution: names attention resolutions, default output size
  int64_t in_channels = 3;
  int64_t model_channels = 256;    // num_channels
  int64_t out_channels = 6;        // 3, or 6 with learn_sigma (eps and the variance interpolation)
  int64_t num_res_blocks = 2;
  std::vector<int64_t> attention_ds = {8, 16, 32};      // downsample rates with attention (image_size / resolution)
  std::vector<double> channel_mult = {1, 1, 2, 2, 4, 4};  // per level; 0.5 in the 512x512 model
  bool conv_resample = true;       // learned convolutions in Upsample/Downsample (unused with resblock_updown)
  int64_t num_classes = 0;         // class-conditional with this many labels (label_emb); 0: unconditional
  int64_t num_heads = 4;           // attention heads, unless num_head_channels is set
  int64_t num_head_channels = 64;  // channels per head; -1: use num_heads
  int64_t num_heads_upsample = -1; // heads in the output half; -1: num_heads
  bool use_scale_shift_norm = true;
  bool resblock_updown = true;     // ResBlocks do the up/downsampling
  bool use_new_attention_order = false;  // QKVAttention (q, k, v split first) instead of QKVAttentionLegacy

  int64_t levels() const { return static_cast<int64_t>(channel_mult.size()); }
  int64_t level_channels(int64_t level) const;  // int(channel_mult[level] * model_channels)
  bool learn_sigma() const { return out_channels == 2 * in_channels; }
  // Input sizes must be multiples of this: 2^(levels - 1).
  int64_t size_factor() const { return int64_t{1} << (levels() - 1); }
  // Throws clipguide::Error naming the setting (GroupNorm(32) divisibility, head channels, empty lists, ...).
  void validate() const;
};

enum class BetaSchedule { kLinear, kCosine };
enum class MeanType { kEpsilon, kStartX };  // predict_xstart false / true
enum class VarianceType { kFixedSmall, kFixedLarge, kLearnedRange };  // learn_sigma: learned range

// create_gaussian_diffusion's arguments (the sampling part; use_kl and rescale_learned_sigmas only change
// training losses and are accepted and ignored).
struct DiffusionConfig {
  int64_t diffusion_steps = 1000;
  BetaSchedule noise_schedule = BetaSchedule::kLinear;
  std::string timestep_respacing;  // "" (every step), "250", "ddim50", "25,25,50"; a sampler may override it
  MeanType mean_type = MeanType::kEpsilon;
  VarianceType variance_type = VarianceType::kLearnedRange;
  bool rescale_timesteps = true;   // the model sees t scaled to [0, 1000) (Disco: true)
};

struct ModelAndDiffusionConfig {
  UNetConfig unet;
  DiffusionConfig diffusion;
};

// The keys of model_and_diffusion_defaults() from a JSON object (as Disco writes model_config; integers may
// be given as strings, attention_resolutions and channel_mult as "32,16,8" or lists), over `base`. Keys that
// only matter for training or fp16 storage (use_fp16, use_checkpoint, dropout, use_kl,
// rescale_learned_sigmas) are accepted. An unknown key or a value of the wrong kind is an Error naming the
// file (`source`) and the key.
ModelAndDiffusionConfig parse_model_config(const std::string& json_text, const std::string& source,
                                           ModelAndDiffusionConfig base = {});
ModelAndDiffusionConfig read_model_config(const std::filesystem::path& path, ModelAndDiffusionConfig base = {});

// What a state dict's shapes tell about `base`'s architecture: channels, levels, res blocks, multipliers,
// attention levels, scale-shift norm, resblock up/down, learned sigma, class count. Head counts, image size
// and the diffusion settings cannot be seen in the weights and stay as in `base`. A state dict that is not
// a guided-diffusion UNet: an Error naming the missing or odd key.
UNetConfig infer_unet_config(const clipguide::TensorMap& state_dict, UNetConfig base = {});

}  // namespace clipguide::generators::diffusion
