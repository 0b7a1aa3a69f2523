// Loading CLIP weights into a ClipModel: load_state_dict() copies named tensors into a module by walking its
// named_parameters()/named_buffers() (shapes checked, dtypes cast), and load_clip() turns any supported file
// or folder (OpenAI TorchScript/state dict, open_clip checkpoint or safetensors, Hugging Face CLIPModel
// folder) into a ready model with its config.
#pragma once

#include "clipnet/clip_model.h"

#include <functional>
#include "clipnet/config.h"
#include "clipnet/io/tensor_map.h"

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <string>
#include <vector>

namespace clipguide::clipnet {

// What load_state_dict() did.
struct LoadReport {
  std::vector<std::string> missing_keys;     // module parameters/buffers absent from the tensors
  std::vector<std::string> unexpected_keys;  // tensors the module has no place for
  std::vector<std::string> ignored_keys;     // known non-weights skipped on purpose (input_resolution, attn_mask, ...)
  int64_t loaded = 0;                        // tensors copied
};

// Copies tensors into module's parameters and buffers by name (casting to each destination's dtype and
// device). Always throws Error on a shape mismatch ("key 'visual.proj': got [..], expected [..]"); with
// strict, also when keys are missing or unexpected (listing them). Keys that OpenAI's files carry but that are
// not weights (input_resolution, context_length, vocab_size, *.attn_mask) are ignored.
// Floating tensors must be finite: a NaN or inf is an Error naming the first such tensor (check_finite).
// `check`, when given, judges the matched keys instead of `strict` (a loader with its own wording, such as
// the VQGAN's): it throws to refuse, before anything is copied. The one state-dict path of every module.
LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors, bool strict = true,
                           const std::function<void(const LoadReport&)>& check = {});

// Throws Error naming the first (by name) floating tensor of `tensors` that holds a NaN or an infinity, with
// how many of its values are bad: weights like that load silently and then make every output NaN.
// `source` (the file) starts the message. Cheap next to reading the file (one pass over the values).
void check_finite(const TensorMap& tensors, const std::string& source);

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
