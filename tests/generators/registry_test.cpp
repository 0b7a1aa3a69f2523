// Tests for generators/registry.cpp and the "pixel" generator (generators/pixel.cpp).
// Shapes: B batch, H x W image.
#include "core/error.h"
#include "generators/generator.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace clipguide::generators {
namespace {

TEST(GeneratorRegistry, KnowsBuiltInGenerators) {
  auto names = GeneratorRegistry::names();
  EXPECT_NE(std::find(names.begin(), names.end(), "pixel"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "vqgan"), names.end());
}

TEST(GeneratorRegistry, UnknownNameListsKnownOnes) {
  try {
    GeneratorRegistry::create("no-such-generator", {});
    FAIL() << "expected clipguide::Error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("unknown generator 'no-such-generator'"), std::string::npos) << message;
    EXPECT_NE(message.find("pixel"), std::string::npos) << message;
    EXPECT_NE(message.find("vqgan"), std::string::npos) << message;
  }
}

// rebuilt() (the memory planner's probes): the weightless generators give a fresh one of the asked size on
// their own device, whatever device the options name.
TEST(GeneratorRegistry, WeightlessGeneratorsRebuildAtAnotherSize) {
  for (const std::string name : {"pixel", "fourier", "primitives"}) {
    SCOPED_TRACE(name);
    GeneratorOptions options;
    options.width = 24;
    options.height = 16;
    auto g = GeneratorRegistry::create(name, options);
    options.width = 40;
    options.height = 8;
    options.device = c10::Device(c10::kCUDA, 3);  // not used: the original's device
    auto r = g->rebuilt(options);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->name(), name);
    at::Tensor image = r->render();
    EXPECT_EQ(shape_str(image.sizes()), "[1, 3, 8, 40]");
    EXPECT_TRUE(image.device().is_cpu());
    EXPECT_EQ(shape_str(g->render().sizes()), "[1, 3, 16, 24]");
  }
}

TEST(GeneratorRegistry, GeneratorsDeclareTheirFiles) {
  EXPECT_EQ(GeneratorRegistry::files("vqgan").weights, "vqgan_checkpoint");
  EXPECT_EQ(GeneratorRegistry::files("vqgan").config, "vqgan_config");
  EXPECT_TRUE(GeneratorRegistry::files("vqgan").weights_required);
  EXPECT_EQ(GeneratorRegistry::files("pixel").weights, "generator_weights");  // the default declaration
  EXPECT_FALSE(GeneratorRegistry::files("pixel").weights_required);
  EXPECT_THROW(GeneratorRegistry::files("no-such-generator"), Error);
}

TEST(LatentTensors, LoadChecksEveryTensorAndKeepsTheLeaves) {
  // Every generator's state()/load_state(): the optimiser's tensors stay the same objects.
  auto generator = GeneratorRegistry::create("pixel", {});
  const auto before = generator->parameters();
  auto state = generator->state();
  state.at("logits").fill_(0.25);
  generator->load_state(state);
  EXPECT_TRUE(before[0].is_same(generator->parameters()[0]));
  EXPECT_FLOAT_EQ(generator->parameters()[0].mean().item<float>(), 0.25f);
  EXPECT_TRUE(generator->parameters()[0].requires_grad());
  auto message = test::error_of([&] { generator->load_state({}); });
  EXPECT_NE(message.find("pixel generator state: no 'logits' tensor"), std::string::npos) << message;
  message = test::error_of([&] { generator->load_state({{"logits", at::zeros({1, 3, 2, 2})}}); });
  EXPECT_NE(message.find("'logits': got [1, 3, 2, 2], expected [1, 3, 256, 256]"), std::string::npos) << message;
}

TEST(GeneratorRegistry, DuplicateNameIsRefused) {
  EXPECT_THROW(GeneratorRegistry::add("pixel", [](const GeneratorOptions&) { return nullptr; }), Error);
}

GeneratorOptions small_options() {
  GeneratorOptions options;
  options.width = 20;
  options.height = 12;
  options.batch = 2;
  options.seed = 3;
  return options;
}

TEST(PixelGenerator, RenderAndGradient) {
  auto generator = GeneratorRegistry::create("pixel", small_options());
  EXPECT_EQ(generator->name(), "pixel");
  EXPECT_EQ(generator->latent_shape(), (std::vector<int64_t>{2, 3, 12, 20}));
  auto image = generator->render();  // (2, 3, 12, 20)
  EXPECT_EQ(image.sizes().vec(), (std::vector<int64_t>{2, 3, 12, 20}));
  EXPECT_GT(image.min().item<float>(), 0.0f);
  EXPECT_LT(image.max().item<float>(), 1.0f);
  image.sum().backward();
  auto grad = generator->parameters()[0].grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_TENSOR_CLOSE(grad, image.detach() * (1 - image.detach()), 1e-6, 0);  // sigmoid'
}

TEST(PixelGenerator, InitFromImageReproducesIt) {
  auto generator = GeneratorRegistry::create("pixel", small_options());
  auto image = at::rand({1, 3, 12, 20}) * 0.9 + 0.05;  // away from the clamp at 1e-3
  generator->init_from_image(image);
  EXPECT_TENSOR_CLOSE(generator->render().detach(), image.expand({2, 3, 12, 20}), 1e-5, 0);
  generator->init_from_image(at::rand({1, 3, 30, 40}));  // resized
  EXPECT_EQ(generator->render().sizes().vec(), (std::vector<int64_t>{2, 3, 12, 20}));
}

TEST(PixelGenerator, SeedAndStateRoundTrip) {
  auto a = GeneratorRegistry::create("pixel", small_options());
  auto b = GeneratorRegistry::create("pixel", small_options());
  EXPECT_TRUE(a->render().equal(b->render()));
  auto saved = a->state();
  a->init_random(4);
  EXPECT_FALSE(a->render().equal(b->render()));
  a->load_state(saved);
  EXPECT_TRUE(a->render().equal(b->render()));
  EXPECT_THROW(a->load_state({{"logits", at::zeros({1, 3, 12, 20})}}), Error);
}

}  // namespace
}  // namespace clipguide::generators
