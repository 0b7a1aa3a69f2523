// Building a run from its settings (app/session.h): which generator, with which files, at which size; the
// vocabulary rule; the members cache.
#include "app/session.h"
#include "core/error.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <filesystem>
#include <fstream>

namespace app = clipguide::app;

namespace {

TEST(Session, GeneratorIsNamedByTheSettingsOrByTheWeightsGiven) {
  app::RunSettings s;
  EXPECT_EQ(app::generator_name(s), "pixel");
  s.vqgan_checkpoint = "vq.ckpt";  // vqgan declared --vqgan_checkpoint as its weights
  EXPECT_EQ(app::generator_name(s), "vqgan");
  s.generator = "fourier";          // --generator wins
  EXPECT_EQ(app::generator_name(s), "fourier");
  s = {};
  s.generator_weights = "g.pt";     // the generic setting names no generator
  EXPECT_EQ(app::generator_name(s), "pixel");
}

TEST(Session, GeneratorFilesComeFromTheSettingsTheGeneratorDeclared) {
  app::RunSettings s;
  s.vqgan_checkpoint = "vq.ckpt";
  s.vqgan_config = "vq.yaml";
  s.generator_weights = "other.pt";
  auto go = app::generator_options(s, c10::kCPU, 3);
  EXPECT_EQ(go.weights, "vq.ckpt");
  EXPECT_EQ(go.config, "vq.yaml");
  EXPECT_EQ(go.seed, 3u);
  EXPECT_EQ(*app::generator_weights_setting(s), "vq.ckpt");
  ASSERT_NE(app::generator_config_setting(s), nullptr);
  s.generator = "torchscript";  // takes --generator_weights, no config
  go = app::generator_options(s, c10::kCPU, 0);
  EXPECT_EQ(go.weights, "other.pt");
  EXPECT_TRUE(go.config.empty());
  EXPECT_EQ(app::generator_config_setting(s), nullptr);
  s.generator = "vqgan";        // its own setting empty: --generator_weights is the fallback
  s.vqgan_checkpoint.clear();
  EXPECT_EQ(app::generator_options(s, c10::kCPU, 0).weights, "other.pt");
  s.generator_weights.clear();  // a generator that needs weights and has none: its flag is named
  try {
    app::generator_options(s, c10::kCPU, 0);
    ADD_FAILURE() << "no error";
  } catch (const clipguide::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--generator vqgan needs --vqgan_checkpoint"), std::string::npos) << e.what();
  }
  s.generator = "pixel";
  s.generator_options = {"novalue"};
  EXPECT_THROW(app::generator_options(s, c10::kCPU, 0), clipguide::Error);
}

TEST(Session, GeneratorIsCreatedOnceAtTheSizeItsFactorAllows) {
  app::RunSettings s;
  s.size = {20, 12};
  std::string note = "none";
  auto generator = app::make_generator(s, c10::kCPU, 1, [&](const std::string& n) { note = n; });
  EXPECT_EQ(note, "none");  // pixel: factor 1, nothing rounded
  EXPECT_EQ(generator->render().sizes().vec(), (std::vector<int64_t>{1, 3, 12, 20}));
  EXPECT_EQ(app::image_size(s, *generator), (std::pair<int64_t, int64_t>{20, 12}));
}

TEST(Session, AWeightFileNeedsAVocabulary) {
  app::RunSettings s;
  const auto file = std::filesystem::temp_directory_path() / "clipguide-session-model.pt";
  std::ofstream(file) << "x";
  s.clip_models = {file.string() + ":0.5"};
  try {
    app::load_members(s, c10::kCPU);
    ADD_FAILURE() << "no error";
  } catch (const clipguide::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--vocab is required for '" + file.string() + "'"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(file);
}

// --clip_model "path[:weight]@device": the device comes off the end; an '@' that names no device stays in
// the path; a CUDA device on a machine without one is an error naming --clip_model and the spec.
TEST(Session, AMemberMayNameItsDevice) {
  auto [spec, device] = app::split_member_device("models/ViT-B-32.pt:0.5@cpu");
  EXPECT_EQ(spec, "models/ViT-B-32.pt:0.5");
  ASSERT_TRUE(device.has_value());
  EXPECT_TRUE(device->is_cpu());
  std::tie(spec, device) = app::split_member_device("runs@v2/model.pt:2");
  EXPECT_EQ(spec, "runs@v2/model.pt:2");
  EXPECT_FALSE(device.has_value());
  std::tie(spec, device) = app::split_member_device("a.pt");
  EXPECT_EQ(spec, "a.pt");
  EXPECT_FALSE(device.has_value());
  if (!torch::cuda::is_available()) {
    try {
      app::split_member_device("a.pt@cuda:1");
      ADD_FAILURE() << "no error";
    } catch (const clipguide::Error& e) {
      EXPECT_NE(std::string(e.what()).find("--clip_model 'a.pt@cuda:1' cuda:1: no CUDA device"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
