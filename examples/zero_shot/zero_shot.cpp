// Zero-shot image classification with clipguide, as a program outside the project would write it:
//   zero_shot MODEL VOCAB IMAGE LABEL [LABEL...]
// prints one "label probability" line per label, most likely first.
#include <clipnet/checkpoint.h>
#include <core/error.h>
#include <clipnet/preprocess.h>
#include <clipnet/tokenizer.h>
#include <clipnet/zero_shot.h>

#include <ATen/ops/argsort.h>

#include <iostream>

int main(int argc, char** argv) {
  namespace cn = clipguide::clipnet;
  if (argc < 5) {
    std::cerr << "usage: " << argv[0] << " MODEL VOCAB IMAGE LABEL [LABEL...]\n";
    return 2;
  }
  try {
    cn::LoadedClip clip = cn::load_clip(argv[1], {});
    cn::Tokenizer tokenizer = cn::Tokenizer::from_file(argv[2]);
    std::vector<std::string> labels(argv + 4, argv + argc);
    const auto& cfg = clip.config;

    torch::NoGradGuard no_grad;
    at::Tensor image = cn::preprocess_file(argv[3], cfg.vision.image_size, cfg.preprocess.mean, cfg.preprocess.std);
    at::Tensor image_emb = clip.model->encode_image(image.unsqueeze(0));  // (1, E)
    at::Tensor classifier = cn::zero_shot_classifier(clip.model, tokenizer, labels, cn::builtin_templates(),
                                                     cfg.text.context_length);  // (K, E)
    at::Tensor probs = cn::zero_shot_probs(clip.model, image_emb, classifier)[0];  // (K,)
    at::Tensor order = probs.argsort(/*dim=*/0, /*descending=*/true);
    for (int64_t i = 0; i < order.size(0); ++i) {
      int64_t k = order[i].item<int64_t>();
      std::cout << labels[k] << " " << probs[k].item<double>() << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "zero_shot: " << clipguide::error_text(e) << "\n";
    return 1;
  }
  return 0;
}
