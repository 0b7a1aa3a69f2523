// Hugging Face transformers' CLIPModel layout: the one place that knows its names. hf_to_openai() renames
// (and, for q/k/v and the projections, reshapes) its tensors to OpenAI's keys; config_from_hf() reads its
// config.json. Only ViT image towers exist in that layout.
#pragma once

#include "clipnet/config.h"
#include "core/io/tensor_map.h"

#include <nlohmann/json_fwd.hpp>

namespace clipguide::clipnet {

// True when the names are CLIPModel's ("text_model.*", "vision_model.*").
bool is_hf_clip_state_dict(const TensorMap& tensors);

// text_model.encoder.layers.N.self_attn.{q,k,v}_proj -> transformer.resblocks.N.attn.in_proj_* (concatenated),
// vision_model.pre_layrnorm -> visual.ln_pre, visual_projection.weight -> visual.proj (transposed), ...
// position_ids buffers are dropped; names it does not know pass through unchanged (so a strict load reports
// them). Throws Error when a q/k/v triple is incomplete.
TensorMap hf_to_openai(const TensorMap& hf_tensors);

// CLIPConfig's config.json (projection_dim, text_config, vision_config with transformers' defaults for absent
// keys). Throws Error when the towers use different activations or an unsupported hidden_act.
ClipConfig config_from_hf(const nlohmann::json& config_json);

}  // namespace clipguide::clipnet
