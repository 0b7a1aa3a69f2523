// The architecture of a taming-transformers VQGAN (VQModel or GumbelVQ): read from taming's YAML config
// (model.target, model.params.{ddconfig, n_embed, embed_dim}) or inferred from a state dict's shapes.
// Attention placement is kept per level (taming derives it from `resolution` and `attn_resolutions`).
#pragma once

#include "core/io/tensor_map.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace clipguide::generators::vqgan {

enum class QuantizerKind {
  kVectorQuantizer,  // taming.models.vqgan.VQModel: nearest codebook entry (quantize.embedding)
  kGumbel,           // taming.models.vqgan.GumbelVQ: argmax of 1x1-conv logits (quantize.proj, quantize.embed)
};

// Defaults are those of vqgan_imagenet_f16_16384 (the checkpoint VQGAN+CLIP uses most).
struct VqganConfig {
  int64_t ch = 128;                               // base channel count (ddconfig.ch)
  int64_t in_channels = 3;                        // image channels into the encoder
  int64_t out_ch = 3;                             // image channels out of the decoder
  std::vector<int64_t> ch_mult = {1, 1, 2, 2, 4};  // channel multiplier per level; levels - 1 downsamplings
  int64_t num_res_blocks = 2;                     // ResnetBlocks per encoder level (decoder: one more)
  std::vector<bool> encoder_attn = {false, false, false, false, true};  // AttnBlocks at encoder level i
  std::vector<bool> decoder_attn = {false, false, false, false, true};  // AttnBlocks at decoder level i
  int64_t z_channels = 256;                       // encoder output / decoder input channels
  bool double_z = false;                          // encoder outputs 2 * z_channels (taming's default is true)
  bool resamp_with_conv = true;                   // strided conv / conv after nearest upsampling (else pooling)
  int64_t n_embed = 16384;                        // N: codebook entries
  int64_t embed_dim = 256;                        // E: codebook vector size
  QuantizerKind quantizer = QuantizerKind::kVectorQuantizer;  // VQModel or GumbelVQ

  int64_t num_levels() const { return static_cast<int64_t>(ch_mult.size()); }
  // Image size / latent size: 2^(levels - 1).
  int64_t size_factor() const { return int64_t{1} << (num_levels() - 1); }
  // Throws clipguide::Error on inconsistent settings (GroupNorm(32) divisibility, attn list lengths, ...).
  void validate() const;
};

// Per-level attention flags as taming computes them: encoder level i runs at resolution / 2^i (halved with
// integer division), decoder level i at (resolution / 2^(levels-1)) * 2^(levels-1-i).
void set_attention_from_resolutions(VqganConfig& config, int64_t resolution,
                                    const std::vector<int64_t>& attn_resolutions);

// Reads taming's YAML (configs/*.yaml, VQGAN+CLIP's *.yaml): model.target VQModel or GumbelVQ, or a
// Net2NetTransformer whose model.params.first_stage_config is one. Throws clipguide::Error naming the file
// and the missing or unsupported entry (unknown target, remap, ...).
VqganConfig read_vqgan_yaml(const std::filesystem::path& path);

// Infers the architecture from taming state-dict keys and shapes (loss.* keys ignored). Throws
// clipguide::Error when the tensors are not a taming VQGAN.
VqganConfig infer_vqgan_config(const clipguide::TensorMap& state_dict);

}  // namespace clipguide::generators::vqgan
