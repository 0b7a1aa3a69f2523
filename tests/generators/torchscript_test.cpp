// Tests for the "torchscript" generator (generators/torchscript.cpp) on small modules scripted and traced in
// Python (tests/reference/torchscript_generators.py): output and latent gradient parity, frozen module weights,
// latent shape from options or the module, errors for bad files and shapes, state, clamp, init_from_image.
// Shapes: B batch (2), H x W image (32 x 32; 16 x 16 for attr_shape.pt), latent (B, 16) or (B, 2, 8).
#include "core/error.h"
#include "core/io/safetensors.h"
#include "generators/generator.h"
#include "generators/torchscript.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>
#include <torch/script.h>

#include <algorithm>
#include <iostream>

namespace clipguide::generators {
namespace {

using test::error_of;

using test::fixture_dir;
using test::max_abs_diff;

clipguide::TensorMap expected_tensors() {
  return clipguide::read_safetensors(fixture_dir("torchscript_generators") / "expected.safetensors").tensors;
}

// The decoder fixtures: (B, 16) -> (B, 3, 32, 32) in [-1, 1].
GeneratorOptions decoder_options(const std::string& file, int64_t batch = 2) {
  GeneratorOptions options;
  options.width = 32;
  options.height = 32;
  options.batch = batch;
  options.seed = 5;
  options.weights = fixture_dir("torchscript_generators") / file;
  options.extra = {{"latent_shape", "1,16"}, {"output_range", "-1,1"}};
  return options;
}

void expect_contains(const std::string& message, const std::string& part) {
  EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
}

class TorchScriptParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchScriptParity, RenderAndLatentGradientMatchPython) {
  const std::string name = GetParam();  // "scripted" or "traced"
  auto expected = expected_tensors();
  auto generator = GeneratorRegistry::create("torchscript", decoder_options("decoder_" + name + ".pt"));
  EXPECT_EQ(generator->name(), "torchscript");
  EXPECT_EQ(generator->latent_shape(), (std::vector<int64_t>{2, 16}));
  generator->load_state({{"latent", expected.at(name + ".latent")}});
  auto image = generator->render();  // (2, 3, 32, 32)
  (image * expected.at(name + ".weight")).sum().backward();
  auto grad = generator->parameters()[0].grad();  // (2, 16)
  ASSERT_TRUE(grad.defined());
  std::cout << name << ": render max abs diff " << max_abs_diff(image, expected.at(name + ".render"))
            << ", latent grad max abs diff " << max_abs_diff(grad, expected.at(name + ".grad")) << "\n";
  EXPECT_TENSOR_CLOSE(image, expected.at(name + ".render"), 1e-5, 0);
  EXPECT_TENSOR_CLOSE(grad, expected.at(name + ".grad"), 1e-5, 1e-5);
  // The module's weights are frozen: no gradient reaches them.
  auto& script = dynamic_cast<TorchScriptGenerator&>(*generator);
  int64_t count = 0;
  for (const auto& p : script.module().parameters()) {
    EXPECT_FALSE(p.requires_grad());
    EXPECT_FALSE(p.grad().defined());
    ++count;
  }
  EXPECT_EQ(count, 6);  // fc, conv1, conv2: weight and bias each
}

INSTANTIATE_TEST_SUITE_P(Modules, TorchScriptParity, ::testing::Values("scripted", "traced"));

TEST(TorchScriptGenerator, LatentShapeFromModuleAttribute) {
  auto expected = expected_tensors();
  GeneratorOptions options;
  options.width = 16;
  options.height = 16;
  options.batch = 2;
  options.weights = fixture_dir("torchscript_generators") / "attr_shape.pt";
  TorchScriptGenerator generator(options);  // output_range "0,1" by default
  EXPECT_EQ(generator.latent_shape(), (std::vector<int64_t>{2, 2, 8}));
  generator.load_state({{"latent", expected.at("attr.latent")}});
  EXPECT_TENSOR_CLOSE(generator.render(), expected.at("attr.render"), 1e-5, 0);
  // extra["latent_shape"] wins over the attribute (the module flattens, so (B, 4, 4) also works).
  options.extra["latent_shape"] = "1,4,4";
  EXPECT_EQ(TorchScriptGenerator(options).latent_shape(), (std::vector<int64_t>{2, 4, 4}));
}

TEST(TorchScriptGenerator, FileErrorsNameTheFile) {
  auto dir = fixture_dir("torchscript_generators");
  for (std::string file : {"no_such_file.pt", "corrupt.pt", "truncated.pt"}) {
    SCOPED_TRACE(file);
    auto message = error_of([&] { TorchScriptGenerator generator(decoder_options(file)); });
    expect_contains(message, (dir / file).string());
  }
  expect_contains(error_of([&] { TorchScriptGenerator generator(decoder_options("no_such_file.pt")); }), "no such file");
  expect_contains(error_of([&] { TorchScriptGenerator generator(decoder_options("corrupt.pt")); }),
                  "cannot load it as a TorchScript archive");
  auto options = decoder_options("decoder_scripted.pt");
  options.weights.clear();
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }), "no weights given");
  options.weights = dir;
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }), "not a regular file");
}

TEST(TorchScriptGenerator, ShapeErrorsSayGotAndExpected) {
  auto options = decoder_options("wrong_channels.pt");
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }),
                  "output shape got [2, 1, 32, 32], expected [2, 3, 32, 32]");
  options = decoder_options("decoder_scripted.pt");
  options.width = 64;
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }),
                  "output shape got [2, 3, 32, 32], expected [2, 3, 32, 64]");
  options = decoder_options("tuple_output.pt");
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }), "forward returned Tuple");
  options = decoder_options("decoder_scripted.pt");
  options.extra["latent_shape"] = "1,15";
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }), "forward failed on a latent [2, 15]");
  options.extra.erase("latent_shape");
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }), "unknown latent shape");
  options = decoder_options("bad_attr.pt");
  options.extra.erase("latent_shape");
  expect_contains(error_of([&] { TorchScriptGenerator generator(options); }), "latent_shape must be a list of ints");
}

TEST(TorchScriptGenerator, BadSettingsAreErrors) {
  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"output_range", "0,2"}, {"latent_shape", "1,x"}, {"latent_shape", "1,0"}, {"latent_clamp", "2,1"},
           {"latent_clamp", "-1"}, {"init_steps", "many"}, {"init_lr", "0"}}) {
    SCOPED_TRACE(key + "=" + value);
    auto options = decoder_options("decoder_scripted.pt");
    options.extra[key] = value;
    expect_contains(error_of([&] { TorchScriptGenerator generator(options); }), key);
  }
}

TEST(TorchScriptGenerator, SeedStateAndClamp) {
  auto options = decoder_options("decoder_scripted.pt");
  TorchScriptGenerator a(options), b(options);
  EXPECT_TRUE(a.latent().equal(b.latent()));
  auto saved = a.state();
  auto held = a.parameters()[0];
  a.init_random(6);
  EXPECT_FALSE(a.render().equal(b.render()));
  a.load_state(saved);
  EXPECT_TRUE(a.render().equal(b.render()));
  EXPECT_TRUE(held.is_same(a.parameters()[0]));  // in place: optimisers keep their tensor
  expect_contains(error_of([&] { a.load_state({{"latent", at::zeros({1, 16})}}); }), "got [1, 16], expected [2, 16]");
  EXPECT_THROW(a.load_state({}), Error);

  a.post_step();  // no clamp configured: unchanged
  EXPECT_TRUE(a.render().equal(b.render()));
  options.extra["latent_clamp"] = "0.5";
  TorchScriptGenerator clamped(options);
  clamped.post_step();
  EXPECT_LE(clamped.latent().abs().max().item<float>(), 0.5f);
  options.extra["latent_clamp"] = "-0.25,1";
  TorchScriptGenerator shifted(options);
  shifted.post_step();
  EXPECT_GE(shifted.latent().min().item<float>(), -0.25f);
  EXPECT_LE(shifted.latent().max().item<float>(), 1.0f);
}

TEST(TorchScriptGenerator, InitFromImageFitsTheLatent) {
  auto expected = expected_tensors();
  auto options = decoder_options("decoder_scripted.pt");
  options.extra["init_steps"] = "100";
  TorchScriptGenerator generator(options);
  auto target = expected.at("scripted.render");  // (2, 3, 32, 32): the decoder at a known latent
  auto weights_before = (*generator.module().parameters().begin()).clone();  // fc.weight
  at::Tensor before;
  {
    at::NoGradGuard no_grad;
    before = at::mse_loss(generator.render(), target);
  }
  generator.init_from_image(target);
  at::NoGradGuard no_grad;
  auto after = at::mse_loss(generator.render(), target);
  std::cout << "init_from_image: MSE " << before.item<double>() << " -> " << after.item<double>() << "\n";
  EXPECT_LT(after.item<double>(), 0.1 * before.item<double>());
  EXPECT_TRUE((*generator.module().parameters().begin()).equal(weights_before));
  EXPECT_FALSE(generator.latent().grad().defined());
  expect_contains(error_of([&] { generator.init_from_image(at::rand({3, 3, 32, 32})); }), "got [3, 3, 32, 32]");
}

TEST(TorchScriptGenerator, AdamStepsReduceColourLoss) {
  TorchScriptGenerator generator(decoder_options("decoder_traced.pt"));
  auto target = at::tensor({0.8f, 0.2f, 0.4f}).view({1, 3, 1, 1}).expand({2, 3, 32, 32});
  torch::optim::Adam adam(generator.parameters(), torch::optim::AdamOptions(0.1));
  auto loss = [&] { return at::mse_loss(generator.render(), target); };
  const double before = loss().item<double>();
  for (int step = 0; step < 20; ++step) {
    adam.zero_grad();
    loss().backward();
    adam.step();
    generator.post_step();
  }
  const double after = loss().item<double>();
  std::cout << "colour MSE " << before << " -> " << after << " after 20 Adam steps\n";
  EXPECT_LT(after, 0.9 * before);  // a random 16-d decoder reaches this colour only partly
}

}  // namespace
}  // namespace clipguide::generators
