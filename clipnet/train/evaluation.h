// Evaluations for pretraining runs: zero-shot classification of the shapes world's held-out pictures per
// attribute (colour, shape, size, position, background) with prompt-template ensembles, caption retrieval
// recall@1/5 among K, and a linear probe (multinomial logistic regression on frozen image features,
// trained by full-batch LBFGS) that works for any model and labelled image set.
// Shapes: N images, K classes, E embedding width, S image side.
#pragma once

#include "clipnet/clip_model.h"
#include "clipnet/tokenizer.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace clipguide::train {

// Results of one evaluation (any field may be absent).
struct EvalReport {
  int64_t step = 0;                          // training step it was taken at
  std::map<std::string, double> zero_shot;   // attribute -> top-1 accuracy ("colour", "shape", ...)
  std::map<std::string, double> swap;        // one-attribute-swap accuracy per attribute (see below)
  double recall_at_1 = -1, recall_at_5 = -1;  // image -> caption retrieval among retrieval_k (-1: not run)
  double linear_probe = -1;                  // linear-probe test accuracy (-1: not run)
};

// Shapes-world evaluation settings.
struct ShapesEvalOptions {
  uint64_t seed = 0;              // the world's seed (held-out split)
  int64_t image_size = 64;        // S (the model's input side)
  int64_t samples = 256;          // single-shape held-out pictures classified
  int64_t retrieval_k = 64;       // pictures per retrieval pool (recall averaged over pools)
  int64_t batch_size = 64;        // images encoded at once
  int64_t context_length = 77;    // text tokens
  std::array<double, 3> mean = {0.48145466, 0.4578275, 0.40821073};  // normalisation (the model config's)
  std::array<double, 3> std = {0.26862954, 0.26130258, 0.27577711};
};

// Zero-shot accuracy per attribute, one-attribute-swap accuracy and caption retrieval on held-out pictures.
// One-attribute swap: each single-shape picture's full description ("a large red circle at the top left on
// a blue background", two phrasings averaged) must score above every description that differs from it in
// exactly one thing: "kind" (6 others), "colour" (the shape's; 10 others, none the background's),
// "background" (10 others, none the shape's), "swap" (shape and background colours exchanged), "size"
// (2 others), "position" (8 others). That is what guidance needs: a picture wrong in one attribute must
// score lower than the right one. The model is put in eval mode and left so; no gradients.
EvalReport evaluate_shapes_world(clipnet::ClipModel& model, const clipnet::Tokenizer& tokenizer,
                                 const ShapesEvalOptions& options = {});

// Linear-probe settings.
struct LinearProbeOptions {
  int64_t max_iterations = 100;   // LBFGS iterations
  double weight_decay = 1e-4;     // L2 on the weights (mean over the training set)
  uint64_t seed = 0;              // classifier init
};

// Trains logistic regression on (N_train, E) features with int64 labels in [0, K) and returns the accuracy
// on the test features. Features are L2-normalised first. Throws Error on mismatched sizes.
double linear_probe(const at::Tensor& train_features, const at::Tensor& train_labels, const at::Tensor& test_features,
                    const at::Tensor& test_labels, int64_t num_classes, const LinearProbeOptions& options = {});

// (N, 3, S, S) normalised images → (N, E) image features, in batches, without gradients.
at::Tensor encode_images(clipnet::ClipModel& model, const at::Tensor& images, int64_t batch_size = 64);

// Linear probe of the shapes world's shape kind: train on n_train held-out pictures' features, test on n_test.
double shapes_linear_probe(clipnet::ClipModel& model, const ShapesEvalOptions& options, int64_t n_train = 256,
                           int64_t n_test = 256, const LinearProbeOptions& probe = {});

}  // namespace clipguide::train
