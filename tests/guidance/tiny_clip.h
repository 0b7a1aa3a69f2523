// Helpers for the guidance tests: tiny random-weight CLIP models from the clip_parity fixture (32 px input)
// as Guide members, and the vocabulary they need. Tests skip with a message when the vocabulary is absent.
#pragma once

#include "guidance/guide.h"
#include "test_util.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace clipguide::guidance::test {

// The OpenAI vocabulary carried in the repository (tests/data/openai-clip).
inline std::filesystem::path vocabulary() { return clipguide::test::openai_vocabulary(); }

// "hf_clip" (Hugging Face folder, 32 px) or "openai_vit" (OpenAI TorchScript archive, 32 px).
inline GuideMember tiny_member(const std::string& which, double weight = 1.0) {
  auto fixtures = clipguide::test::fixture_dir("clip_parity");
  auto path = which == "hf_clip" ? fixtures / "hf_clip" : fixtures / "openai_vit_jit" / "model.pt";
  GuideMember m = load_member(path, vocabulary(), weight);
  m.name = which;
  return m;
}

// Small, fast defaults: 8 cutouts, no random augmentation.
inline GuideOptions tiny_options(uint64_t seed = 7) {
  GuideOptions o;
  o.cutouts.cutn = 8;
  o.augments = parse_augments("none");
  o.seed = seed;
  return o;
}

// One thread (small models) and the vocabulary present: a test failure, never a skip, without it.
#define CLIPGUIDE_REQUIRE_VOCABULARY()                                                  \
  do {                                                                                  \
    at::set_num_threads(1);                                                             \
    ASSERT_TRUE(std::filesystem::exists(::clipguide::guidance::test::vocabulary()));    \
  } while (0)

}  // namespace clipguide::guidance::test
