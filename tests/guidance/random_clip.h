// A tiny random-weight ViT CLIP built in place (32 px input, 2 blocks), for guidance tests that need a
// model but no particular weights: no fixture, no vocabulary (use image prompts).
#pragma once

#include "guidance/guide.h"

#include <torch/utils.h>

namespace clipguide::guidance::test {

inline GuideMember random_tiny_vit(uint64_t seed = 0) {
  clipnet::ClipConfig c;
  c.embed_dim = 32;
  c.vision.image_size = 32;
  c.vision.layers = {2};
  c.vision.width = 64;
  c.vision.patch_size = 8;
  c.vision.head_width = 32;
  c.text.context_length = 8;
  c.text.vocab_size = 64;
  c.text.width = 32;
  c.text.heads = 2;
  c.text.layers = 1;
  c.name = "tiny-vit";
  torch::manual_seed(seed);
  GuideMember m;
  m.model = clipnet::ClipModel(c);
  m.model->eval();
  for (auto& p : m.model->parameters()) p.set_requires_grad(false);
  m.config = c;
  return m;
}

}  // namespace clipguide::guidance::test
