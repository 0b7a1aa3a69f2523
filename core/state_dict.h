// One state-dict path for every module (CLIP towers, VQGAN, user generators): load_state_dict() copies named
// tensors into a torch::nn::Module by walking its named_parameters()/named_buffers(), shapes checked, dtypes
// cast, values checked finite.
#pragma once
#include "core/io/tensor_map.h"

#include <torch/nn/module.h>

#include <functional>
#include <string>
#include <vector>

namespace clipguide {

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
// `adopt`: the tensors are the caller's to give away (just read from a file): each that already has the
// parameter's dtype, device and strides becomes that parameter (shared, not copied); the caller must not
// change them afterwards. Without it every value is copied.
LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors, bool strict = true,
                           const std::function<void(const LoadReport&)>& check = {}, bool adopt = false);

// Throws Error naming the first (by name) floating tensor of `tensors` that holds a NaN or an infinity, with
// how many of its values are bad: weights like that load silently and then make every output NaN.
// `source` (the file) starts the message. Cheap next to reading the file (one pass over the values).
void check_finite(const TensorMap& tensors, const std::string& source);

}  // namespace clipguide
