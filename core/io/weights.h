// read_weights: one entry point for every weight file clipguide loads. Detects the format from the
// file's bytes (safetensors, torch.save zip, TorchScript archive), returns tensors by dotted name.
#pragma once

#include "core/io/tensor_map.h"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace clipguide {

enum class WeightFormat { kSafetensors, kTorchZip, kTorchScript };

// "safetensors", "torch.save zip", "TorchScript"
std::string to_string(WeightFormat format);

struct WeightFile {
  TensorMap tensors;                            // every tensor, by dotted name, CPU
  WeightFormat format = WeightFormat::kSafetensors;
  std::map<std::string, std::string> metadata;  // safetensors __metadata__; empty for other formats
  std::vector<std::string> skipped_classes;     // pickle globals seen but never instantiated, e.g. "argparse.Namespace"
};

// Reads any supported weight file, choosing the reader by content (not by extension):
//   safetensors   8-byte header size then '{'                -> tensors and metadata as stored.
//   TorchScript   zip with code/ or constants.pkl             -> every tensor attribute of the module tree
//                                                                ("visual.conv1.weight"), graph never run.
//   torch.save    zip with data.pkl                           -> the pickled value, unwrapped and flattened:
//     1. While the value is a dict holding no tensors directly, descend into the first of
//        "state_dict" (Lightning, open_clip, timm), "model_state_dict" (common training scripts),
//        "model" (DeiT/MAE/fairseq style) or "module" (DeepSpeed) that is present and is a dict or
//        a pickled module. "state_dict_ema" and optimizer state are never chosen.
//     2. Flatten nested dicts, lists and pickled nn.Modules into dotted names (see flatten_tensors).
//     3. Strip a "module." prefix (DataParallel/DDP) while every key has it.
// The legacy (pre-1.6, non-zip) torch.save format is refused with a "re-save" message.
// Throws clipguide::Error naming the file and what was wrong.
WeightFile read_weights(const std::filesystem::path& path);

// With the environment variable CLIPGUIDE_LOG_LOADS set (to anything but "" or "0"), every weight file a
// program reads prints one line on stderr, "clipguide: read weights '<path>' (<what>) in <s> s": to see what
// a run loads, how often and how long it takes. read_weights logs itself; readers of other formats (the
// TorchScript generator's torch::jit::load) call this.
void log_weight_read(const std::filesystem::path& path, const std::string& what, double seconds);

// With CLIPGUIDE_LOG_LOADS set, prints "clipguide: <event> <s> s after the process started" (measured from the
// kernel's start time of the process, so loading the shared libraries counts): start-up milestones such as
// clip-guide's "first step starts".
void log_since_start(const std::string& event);

}  // namespace clipguide
