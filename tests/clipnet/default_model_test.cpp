// Tests for clipnet/default_model and the model it finds: the lookup order (environment, install prefix,
// source tree), the error that lists where it looked, and that the shipped models/shapes-clip loads with
// its vocabulary and still knows what its model card says (held-out zero-shot accuracy floors).
#include "clipnet/default_model.h"

#include "clipnet/checkpoint.h"
#include "clipnet/tokenizer.h"
#include "clipnet/train/evaluation.h"
#include "core/io/safetensors.h"
#include "test_util.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>

namespace clipguide::clipnet {
namespace {

namespace fs = std::filesystem;

// Sets an environment variable for one test and restores the old value after it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(DefaultModel, EnvironmentComesFirstThenInstallPrefixThenSourceTree) {
  const fs::path dir = test::temp_dir() / "my-model";
  fs::create_directories(dir);
  ScopedEnv env("CLIPGUIDE_DEFAULT_MODEL", dir.string());
  const auto candidates = default_model_candidates();
  ASSERT_EQ(candidates.size(), 3u);
  EXPECT_EQ(candidates[0], dir);
  EXPECT_EQ(candidates[1].filename(), kDefaultModelName);
  EXPECT_NE(candidates[1].string().find("share/clipguide/models"), std::string::npos) << candidates[1];
  const char* source_dir = std::getenv("CLIPGUIDE_SOURCE_DIR");
  ASSERT_NE(source_dir, nullptr) << "CLIPGUIDE_SOURCE_DIR is not set: run this test through ctest";
  EXPECT_EQ(candidates[2], fs::path(source_dir) / "models" / kDefaultModelName);
  EXPECT_EQ(default_model_path(), dir);
}

TEST(DefaultModel, MissingEnvironmentPathFallsBackToTheShippedModel) {
  ScopedEnv env("CLIPGUIDE_DEFAULT_MODEL", (test::temp_dir() / "nowhere").string());
  EXPECT_EQ(default_model_path(), fs::path(std::getenv("CLIPGUIDE_SOURCE_DIR")) / "models" / kDefaultModelName);
}

TEST(DefaultModel, ShippedModelLoadsWithItsVocabularyAndKnowsTheShapesWorld) {
  unsetenv("CLIPGUIDE_DEFAULT_MODEL");
  const fs::path path = default_model_path();
  LoadedClip clip = load_clip(path);
  const Tokenizer tokenizer = Tokenizer::from_file(path);
  EXPECT_EQ(clip.config.vision.image_size, 64);
  EXPECT_EQ(clip.config.text.vocab_size, tokenizer.vocab_size());
  EXPECT_NO_THROW(check_vocabulary_fits(tokenizer.vocab_size(), clip.config, path.string(), path.string()));
  // OpenAI's 49408-token vocabulary with this small model: an error naming both, not an index error later.
  const std::string message = test::error_of([&] { check_vocabulary_fits(49408, clip.config, "bpe.txt.gz", "m"); });
  EXPECT_NE(message.find("vocabulary 'bpe.txt.gz' has 49408 tokens, but the model 'm' embeds only " +
                         std::to_string(tokenizer.vocab_size())),
            std::string::npos)
      << message;

  train::ShapesEvalOptions e;
  e.image_size = clip.config.vision.image_size;
  e.context_length = clip.config.text.context_length;
  for (int c = 0; c < 3; ++c) e.mean[c] = clip.config.preprocess.mean[c], e.std[c] = clip.config.preprocess.std[c];
  e.samples = 256;
  const train::EvalReport r = train::evaluate_shapes_world(clip.model, tokenizer, e);
  for (const auto& [name, acc] : r.zero_shot) std::printf("  %s: %.3f\n", name.c_str(), acc);
  std::printf("  caption retrieval R@1 among 64: %.3f\n", r.recall_at_1);
  for (const auto& [name, acc] : r.swap) std::printf("  one-attribute swap, %s: %.3f\n", name.c_str(), acc);
  // Floors below the model card's figures (models/shapes-clip/README.md) and far above chance (colour 1/12,
  // shape 1/7, position 1/9, background 1/12, retrieval 1/64). The one-attribute swaps are what guidance
  // needs (the card's targets: 0.95 for colours and the swap, 0.9 for kind, size and position); zero-shot
  // colour by "a {} shape." without the background is weaker (0.80) and matters less.
  EXPECT_GE(r.zero_shot.at("colour"), 0.7);
  EXPECT_GE(r.zero_shot.at("position"), 0.9);
  EXPECT_GE(r.zero_shot.at("shape"), 0.7);
  EXPECT_GE(r.zero_shot.at("background"), 0.95);
  EXPECT_GE(r.recall_at_1, 0.9);
  for (const char* attribute : {"colour", "background", "swap"}) EXPECT_GE(r.swap.at(attribute), 0.95) << attribute;
  for (const char* attribute : {"kind", "size", "position"}) EXPECT_GE(r.swap.at(attribute), 0.9) << attribute;
}

TEST(DefaultModel, ErrorListsEveryPlaceSearched) {
  const std::string message = test::error_of([] { default_model_path({"/nonexistent/a", "/nonexistent/b"}); });
  EXPECT_NE(message.find("/nonexistent/a, /nonexistent/b"), std::string::npos) << message;
  EXPECT_NE(message.find("--model"), std::string::npos) << message;
  EXPECT_NE(message.find("CLIPGUIDE_DEFAULT_MODEL"), std::string::npos) << message;
}

// Non-finite weights (one NaN in text_projection; logit_scale = inf; a whole tensor of NaN) are refused
// at load time, naming the file and the tensor, instead of giving NaN embeddings.
TEST(DefaultModel, NonFiniteWeightsAreRefusedNamingTheTensor) {
  const fs::path shipped = default_model_path();
  const SafetensorsFile original = read_safetensors(shipped / "model.safetensors");
  for (const auto& [key, poison] : std::vector<std::pair<std::string, double>>{
           {"text_projection", std::nan("")}, {"logit_scale", INFINITY}, {"token_embedding.weight", -INFINITY}}) {
    SCOPED_TRACE(key);
    const fs::path dir = test::temp_dir() / "bad-model";
    fs::create_directories(dir);
    for (const char* file : {"config.json", "vocab.json", "merges.txt"}) fs::copy_file(shipped / file, dir / file);
    TensorMap tensors;
    for (const auto& [name, tensor] : original.tensors) tensors[name] = tensor.clone();
    ASSERT_TRUE(tensors.count(key));
    tensors[key].view({-1})[0] = poison;
    write_safetensors(dir / "model.safetensors", tensors);
    const std::string message = test::error_of([&] { load_clip(dir); });
    EXPECT_NE(message.find("model.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find("tensor '" + key + "' holds 1 NaN or infinite value(s)"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace clipguide::clipnet
