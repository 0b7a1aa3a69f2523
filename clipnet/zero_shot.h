// Zero-shot classification as in the CLIP paper: each label's text classifier is the normalised mean of
// its normalised prompt-template embeddings; probabilities are softmax(logit_scale * cosine).
// Shapes: I images, T texts, K labels, E embedding width.
#pragma once

#include "clipnet/clip_model.h"
#include "clipnet/tokenizer.h"

#include <filesystem>
#include <string>
#include <vector>

namespace clipguide::clipnet {

// A small general-purpose template set written for clipguide ("a photo of a {}.", ...).
const std::vector<std::string>& builtin_templates();

// Templates from a file, one per line; blank lines and lines starting with '#' are skipped. Each must
// contain "{}"; Error names the file and line otherwise.
std::vector<std::string> read_templates(const std::filesystem::path& path);

// "a photo of a {}." + "cat" → "a photo of a cat." (every "{}" is replaced). Error when there is none.
std::string fill_template(const std::string& templ, const std::string& label);

// (K, E) unit rows: per label, mean of the normalised embeddings of its filled templates, renormalised.
at::Tensor zero_shot_classifier(ClipModel& model, const Tokenizer& tokenizer, const std::vector<std::string>& labels,
                                const std::vector<std::string>& templates, int64_t context_length = 77);

// (I, T) = exp(logit_scale) * normalised image embeddings @ normalised text embeddings^T, as CLIP's forward.
at::Tensor logits(ClipModel& model, const at::Tensor& image_embeddings, const at::Tensor& text_embeddings);

// (I, K) softmax over labels of logits against the classifier's rows.
at::Tensor zero_shot_probs(ClipModel& model, const at::Tensor& image_embeddings, const at::Tensor& classifier);

}  // namespace clipguide::clipnet
