// Zero-shot, retrieval and linear-probe evaluation (see evaluation.h).
// ref: openai/CLIP notebooks (prompt ensembles), mlfoundations/open_clip src/open_clip_train/zero_shot.py
// Shapes: N images, K classes, E embedding width, S image side, T templates.
#include "clipnet/train/evaluation.h"

#include "clipnet/preprocess.h"
#include "clipnet/train/shapes_world.h"
#include "clipnet/zero_shot.h"
#include "core/error.h"

#include <ATen/ops/argmax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/eq.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <torch/optim/lbfgs.h>

#include <functional>

namespace clipguide::train {
namespace {

// Held-out single-shape pictures: (N, 3, S, S) normalised, their scenes and captions.
struct HeldOut {
  at::Tensor images;
  std::vector<ShapesScene> scenes;
  std::vector<std::string> captions;
};

HeldOut held_out(const ShapesEvalOptions& options, int64_t first, int64_t n) {
  ShapesWorldOptions w;
  w.seed = options.seed;
  w.split = ShapesSplit::kHeldOut;
  w.image_size = options.image_size;
  w.two_shape_fraction = 0.0;
  ShapesWorld world(w);
  HeldOut out;
  std::vector<at::Tensor> images;
  for (int64_t i = first; i < first + n; ++i) {
    images.push_back(world.get(i).image);  // (3, S, S) uint8
    out.scenes.push_back(world.attributes(i));
    out.captions.push_back(world.caption(i));
  }
  at::Tensor x = at::stack(images).to(at::kFloat).div_(255.0);  // (N, 3, S, S) in [0, 1]
  out.images = clipnet::normalize(x, options.mean, options.std);
  return out;
}

at::Tensor unit_rows(const at::Tensor& x) { return x / x.norm(2, {-1}, true); }

struct Attribute {
  std::string name;
  const std::vector<ShapesWord>* words;
  std::function<int(const ShapesScene&)> label;
  std::vector<std::string> templates;
};

std::vector<Attribute> attributes() {
  return {
      {"colour", &shapes_world_colours(), [](const ShapesScene& s) { return s.shapes[0].colour; },
       {"a {} shape.", "a {} object.", "something {}."}},
      {"shape", &shapes_world_kinds(), [](const ShapesScene& s) { return s.shapes[0].kind; },
       {"a {}.", "a picture of a {}.", "a {} on a plain background."}},
      {"size", &shapes_world_sizes(), [](const ShapesScene& s) { return s.shapes[0].size; },
       {"a {} shape.", "a {} object."}},
      {"position", &shapes_world_positions(), [](const ShapesScene& s) { return s.shapes[0].position; },
       {"a shape at the {}.", "something at the {}."}},
  };
}

// Unit-norm text embeddings of `texts`, in chunks: (T, E).
at::Tensor encode_texts(clipnet::ClipModel& model, const clipnet::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                        int64_t context_length) {
  std::vector<at::Tensor> embedded;
  for (size_t i = 0; i < texts.size(); i += 512) {
    std::vector<std::string> chunk(texts.begin() + static_cast<std::ptrdiff_t>(i),
                                   texts.begin() + static_cast<std::ptrdiff_t>(std::min(texts.size(), i + 512)));
    embedded.push_back(unit_rows(model->encode_text(tokenizer.tokenize(chunk, context_length, true)).to(at::kFloat)));
  }
  return at::cat(embedded, 0);
}

// The scenes that differ from `scene` (one shape) in exactly `attribute` (see evaluation.h).
std::vector<ShapesScene> one_attribute_swaps(const ShapesScene& scene, const std::string& attribute) {
  std::vector<ShapesScene> out;
  const ShapeAttributes& a = scene.shapes[0];
  auto with = [&](auto change) {
    ShapesScene s = scene;
    change(s);
    out.push_back(s);
  };
  const int n_colours = static_cast<int>(shapes_world_colours().size());
  if (attribute == "kind") {
    for (int k = 0; k < static_cast<int>(shapes_world_kinds().size()); ++k)
      if (k != a.kind) with([k](ShapesScene& s) { s.shapes[0].kind = k; });
  } else if (attribute == "colour") {
    for (int c = 0; c < n_colours; ++c)
      if (c != a.colour && c != scene.background) with([c](ShapesScene& s) { s.shapes[0].colour = c; });
  } else if (attribute == "background") {
    for (int c = 0; c < n_colours; ++c)
      if (c != a.colour && c != scene.background) with([c](ShapesScene& s) { s.background = c; });
  } else if (attribute == "swap") {
    with([](ShapesScene& s) { std::swap(s.shapes[0].colour, s.background); });
  } else if (attribute == "size") {
    for (int k = 0; k < static_cast<int>(shapes_world_sizes().size()); ++k)
      if (k != a.size) with([k](ShapesScene& s) { s.shapes[0].size = k; });
  } else if (attribute == "position") {
    for (int k = 0; k < static_cast<int>(shapes_world_positions().size()); ++k)
      if (k != a.position) with([k](ShapesScene& s) { s.shapes[0].position = k; });
  }
  return out;
}

// One-attribute-swap accuracy per attribute for unit image features (N, E) of `scenes`.
std::map<std::string, double> swap_accuracy(clipnet::ClipModel& model, const clipnet::Tokenizer& tokenizer,
                                            const at::Tensor& features, const std::vector<ShapesScene>& scenes,
                                            int64_t context_length) {
  static const std::vector<std::string> kAttributes = {"kind", "colour", "background", "swap", "size", "position"};
  constexpr int kForms = 2;  // phrasings averaged (ShapesWorld::full_prompt forms)
  // Texts: per picture, its own description then every swap, each in kForms phrasings.
  std::vector<std::string> texts;
  std::vector<int64_t> own_row(scenes.size());
  auto add = [&](const ShapesScene& s) {
    for (int f = 0; f < kForms; ++f) texts.push_back(ShapesWorld::full_prompt(s, f));
    return static_cast<int64_t>(texts.size()) / kForms - 1;
  };
  std::vector<std::vector<std::pair<int64_t, int64_t>>> rows(scenes.size());  // per attribute: [begin, end)
  for (size_t i = 0; i < scenes.size(); ++i) {
    own_row[i] = add(scenes[i]);
    for (const auto& attribute : kAttributes) {
      const int64_t begin = static_cast<int64_t>(texts.size()) / kForms;
      for (const auto& s : one_attribute_swaps(scenes[i], attribute)) add(s);
      rows[i].push_back({begin, static_cast<int64_t>(texts.size()) / kForms});
    }
  }
  const at::Tensor text = encode_texts(model, tokenizer, texts, context_length);          // (T * kForms, E)
  const at::Tensor mean = unit_rows(text.view({-1, kForms, text.size(1)}).mean(1));      // (T, E)
  std::map<std::string, double> out;
  std::vector<int64_t> right(kAttributes.size(), 0);
  for (size_t i = 0; i < scenes.size(); ++i) {
    const at::Tensor scores = at::matmul(mean, features[static_cast<int64_t>(i)]);  // (T,)
    const auto* score = scores.data_ptr<float>();
    for (size_t k = 0; k < kAttributes.size(); ++k) {
      bool best = true;
      for (int64_t r = rows[i][k].first; r < rows[i][k].second; ++r) best = best && score[own_row[i]] > score[r];
      right[k] += best;
    }
  }
  for (size_t k = 0; k < kAttributes.size(); ++k)
    out[kAttributes[k]] = static_cast<double>(right[k]) / static_cast<double>(scenes.size());
  return out;
}

}  // namespace

at::Tensor encode_images(clipnet::ClipModel& model, const at::Tensor& images, int64_t batch_size) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < images.size(0); i += batch_size)
    out.push_back(model->encode_image(images.narrow(0, i, std::min(batch_size, images.size(0) - i))).to(at::kFloat));
  return at::cat(out, 0);  // (N, E)
}

EvalReport evaluate_shapes_world(clipnet::ClipModel& model, const clipnet::Tokenizer& tokenizer,
                                 const ShapesEvalOptions& options) {
  c10::NoGradGuard no_grad;
  model->eval();
  EvalReport report;
  const HeldOut data = held_out(options, 0, options.samples);
  const at::Tensor features = unit_rows(encode_images(model, data.images, options.batch_size));  // (N, E)
  for (const auto& attr : attributes()) {
    std::vector<std::string> labels;
    for (const auto& w : *attr.words) labels.push_back(w.name);
    const at::Tensor classifier = clipnet::zero_shot_classifier(model, tokenizer, labels, attr.templates,
                                                                options.context_length).to(at::kFloat);  // (K, E)
    const at::Tensor predicted = at::argmax(at::matmul(features, classifier.t()), 1);             // (N,)
    std::vector<int64_t> truth;
    for (const auto& s : data.scenes) truth.push_back(attr.label(s));
    report.zero_shot[attr.name] = at::eq(predicted, at::tensor(truth)).to(at::kDouble).mean().item<double>();
  }
  // Background, given the shape: "a red circle on a {} background" per picture. A prompt that names no
  // shape ("on a {} background") is matched by the shape's colour as much as by the background's, since
  // captions name both colours in one sentence.
  {
    const auto& colours = shapes_world_colours();
    const int64_t k = static_cast<int64_t>(colours.size());
    std::vector<std::string> texts;
    for (const auto& scene : data.scenes) {
      const ShapeAttributes& a = scene.shapes[0];
      const std::string shape = colours[a.colour].name + " " + shapes_world_kinds()[a.kind].name;
      for (const auto& bg : colours) texts.push_back("a " + shape + " on a " + bg.name + " background");
      for (const auto& bg : colours) texts.push_back(shape + ", " + bg.name + " background");
    }
    std::vector<at::Tensor> embedded;
    for (size_t i = 0; i < texts.size(); i += 512) {
      std::vector<std::string> chunk(texts.begin() + i, texts.begin() + std::min(texts.size(), i + 512));
      embedded.push_back(unit_rows(model->encode_text(tokenizer.tokenize(chunk, options.context_length, true)).to(at::kFloat)));
    }
    const int64_t n = static_cast<int64_t>(data.scenes.size());
    const at::Tensor text = unit_rows(at::cat(embedded, 0).view({n, 2, k, -1}).mean(1));  // (N, K, E)
    const at::Tensor scores = at::matmul(text, features.unsqueeze(2)).squeeze(2);           // (N, K)
    const at::Tensor predicted = at::argmax(scores, 1);
    std::vector<int64_t> truth;
    for (const auto& scene : data.scenes) truth.push_back(scene.background);
    report.zero_shot["background"] = at::eq(predicted, at::tensor(truth)).to(at::kDouble).mean().item<double>();
  }
  report.swap = swap_accuracy(model, tokenizer, features, data.scenes, options.context_length);
  // Caption retrieval: each picture's own caption among the K of its pool.
  int64_t hits1 = 0, hits5 = 0, total = 0;
  const int64_t k = std::min(options.retrieval_k, options.samples);
  for (int64_t start = 0; start + k <= options.samples; start += k) {
    std::vector<std::string> captions(data.captions.begin() + start, data.captions.begin() + start + k);
    const at::Tensor text = unit_rows(model->encode_text(tokenizer.tokenize(captions, options.context_length, true))
                                          .to(at::kFloat));                                     // (K, E)
    const at::Tensor sims = at::matmul(features.narrow(0, start, k), text.t());                 // (K, K)
    const at::Tensor top = std::get<1>(at::topk(sims, std::min<int64_t>(5, k), 1));              // (K, 5)
    for (int64_t i = 0; i < k; ++i) {
      const at::Tensor row = top[i];
      hits1 += row[0].item<int64_t>() == i;
      hits5 += at::eq(row, i).any().item<bool>();
    }
    total += k;
  }
  if (total > 0) {
    report.recall_at_1 = static_cast<double>(hits1) / static_cast<double>(total);
    report.recall_at_5 = static_cast<double>(hits5) / static_cast<double>(total);
  }
  return report;
}

double linear_probe(const at::Tensor& train_features, const at::Tensor& train_labels, const at::Tensor& test_features,
                    const at::Tensor& test_labels, int64_t num_classes, const LinearProbeOptions& options) {
  if (train_features.dim() != 2 || test_features.dim() != 2 || train_features.size(1) != test_features.size(1) ||
      train_labels.numel() != train_features.size(0) || test_labels.numel() != test_features.size(0))
    throw Error("linear probe: features (N, E) and labels (N) must match; got train " +
                shape_str(train_features.sizes()) + " / " + shape_str(train_labels.sizes()) + ", test " +
                shape_str(test_features.sizes()) + " / " + shape_str(test_labels.sizes()));
  const at::Tensor x = unit_rows(train_features.detach().to(at::kFloat));  // (N, E)
  const at::Tensor y = train_labels.to(at::kLong);
  at::Tensor w = at::zeros({x.size(1), num_classes}).requires_grad_();     // (E, K)
  at::Tensor b = at::zeros({num_classes}).requires_grad_();                // (K,)
  c10::AutoGradMode grad(true);
  torch::optim::LBFGS lbfgs({w, b}, torch::optim::LBFGSOptions(1.0).max_iter(options.max_iterations)
                                        .line_search_fn("strong_wolfe"));
  lbfgs.step([&] {
    lbfgs.zero_grad();
    at::Tensor loss = at::cross_entropy_loss(at::matmul(x, w) + b, y) + options.weight_decay * w.pow(2).sum();
    loss.backward();
    return loss;
  });
  c10::NoGradGuard no_grad;
  const at::Tensor logits = at::matmul(unit_rows(test_features.to(at::kFloat)), w) + b;  // (N, K)
  return at::eq(at::argmax(logits, 1), test_labels.to(at::kLong)).to(at::kDouble).mean().item<double>();
}

double shapes_linear_probe(clipnet::ClipModel& model, const ShapesEvalOptions& options, int64_t n_train,
                           int64_t n_test, const LinearProbeOptions& probe) {
  model->eval();
  const HeldOut train = held_out(options, 100000, n_train);
  const HeldOut test = held_out(options, 200000, n_test);
  auto labels = [](const HeldOut& d) {
    std::vector<int64_t> y;
    for (const auto& s : d.scenes) y.push_back(s.shapes[0].kind);
    return at::tensor(y);
  };
  return linear_probe(encode_images(model, train.images), labels(train), encode_images(model, test.images),
                      labels(test), static_cast<int64_t>(shapes_world_kinds().size()), probe);
}

}  // namespace clipguide::train
