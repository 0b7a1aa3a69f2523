// Zero-shot classification (see zero_shot.h). ref: openai/CLIP notebooks/Prompt_Engineering_for_ImageNet.ipynb
// (zeroshot_classifier: mean of normalised template embeddings, renormalised).
#include "clipnet/zero_shot.h"

#include "core/error.h"

#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/stack.h>
#include <torch/utils.h>

#include <fstream>

namespace clipguide::clipnet {
namespace {
at::Tensor unit_rows(const at::Tensor& x) { return x / at::linalg_vector_norm(x, 2, {-1}, /*keepdim=*/true); }
}  // namespace

const std::vector<std::string>& builtin_templates() {
  static const std::vector<std::string> kTemplates = {
      "a photo of a {}.",       "a picture of a {}.",      "an image of a {}.",  "a close-up photo of a {}.",
      "a photo of the {}.",     "a drawing of a {}.",      "a painting of a {}.", "a rendering of a {}.",
      "a blurry photo of a {}.", "a bright photo of a {}.", "a dark photo of a {}.", "a {}.",
  };
  return kTemplates;
}

std::vector<std::string> read_templates(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read templates file '" + path.string() + "'");
  std::vector<std::string> templates;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    if (line.find("{}") == std::string::npos) {
      throw Error("templates file '" + path.string() + "', line " + std::to_string(number) +
                  ": a template needs \"{}\" where the label goes, got '" + line + "'");
    }
    templates.push_back(line);
  }
  if (templates.empty()) throw Error("templates file '" + path.string() + "' has no templates");
  return templates;
}

std::string fill_template(const std::string& templ, const std::string& label) {
  auto pos = templ.find("{}");
  if (pos == std::string::npos) throw Error("template '" + templ + "' has no \"{}\" for the label");
  std::string out;
  size_t start = 0;
  for (; pos != std::string::npos; start = pos + 2, pos = templ.find("{}", start)) {
    out += templ.substr(start, pos - start) + label;
  }
  return out + templ.substr(start);
}

at::Tensor zero_shot_classifier(ClipModel& model, const Tokenizer& tokenizer, const std::vector<std::string>& labels,
                                const std::vector<std::string>& templates, int64_t context_length) {
  if (labels.empty()) throw Error("zero-shot classification needs at least one label");
  if (templates.empty()) throw Error("zero-shot classification needs at least one template");
  torch::NoGradGuard no_grad;
  const auto device = model->text_projection.device();
  std::vector<at::Tensor> rows;
  for (const auto& label : labels) {
    std::vector<std::string> texts;
    for (const auto& t : templates) texts.push_back(fill_template(t, label));
    at::Tensor emb = unit_rows(model->encode_text(tokenizer.tokenize(texts, context_length).to(device)));  // (N, E)
    rows.push_back(unit_rows(emb.mean(0)));  // (E,)
  }
  return at::stack(rows);  // (K, E)
}

at::Tensor logits(ClipModel& model, const at::Tensor& image_embeddings, const at::Tensor& text_embeddings) {
  return model->logit_scale.exp() * unit_rows(image_embeddings).matmul(unit_rows(text_embeddings).t());
}

at::Tensor zero_shot_probs(ClipModel& model, const at::Tensor& image_embeddings, const at::Tensor& classifier) {
  return at::softmax(logits(model, image_embeddings, classifier).to(at::kFloat), -1);
}

}  // namespace clipguide::clipnet
