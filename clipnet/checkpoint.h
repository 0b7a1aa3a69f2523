// Loading CLIP weights into a ClipModel: load_clip() turns any supported file or folder (OpenAI
// TorchScript/state dict, open_clip checkpoint or safetensors, Hugging Face CLIPModel folder) into a ready
// model with its config, through core/state_dict.h.
#pragma once

#include "clipnet/clip_model.h"

#include "clipnet/config.h"
#include "core/state_dict.h"

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <filesystem>
#include <string>

namespace clipguide::clipnet {

struct ClipLoadOptions {
  std::string config;                 // built-in name ("ViT-B-32") or path to a config JSON; empty: the folder's
                                      // config, else inferred from the tensor shapes (OpenAI's build_model rule)
  at::ScalarType dtype = at::kFloat;  // model dtype (LayerNorm still computes in fp32)
  c10::Device device = c10::kCPU;     // where the model lives
  bool strict = true;                 // fail on missing or unexpected weights
  bool requires_grad = false;         // false: frozen weights, so backward computes only d/d(input)
};

struct LoadedClip {
  ClipModel model{nullptr};        // in eval mode
  ClipConfig config;               // what it was built from
  std::string source_description;  // e.g. "TorchScript archive x.pt (OpenAI names), config inferred from shapes"
};

// path_or_dir: a weight file (.pt/.pth/.bin TorchScript or torch zip, .safetensors), a Hugging Face CLIPModel
// folder (config.json + model.safetensors), or a folder with an open_clip config (open_clip_config.json or
// config.json) and one weight file. Throws Error naming the path and the problem.
LoadedClip load_clip(const std::filesystem::path& path_or_dir, const ClipLoadOptions& options = {});

}  // namespace clipguide::clipnet
