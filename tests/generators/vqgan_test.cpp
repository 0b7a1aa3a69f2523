// Tests for generators/vqgan: parity with taming-transformers and VQGAN+CLIP on small random-weight models
// (tests/reference/vqgan.py) for every file format and config source, then config inference, loader errors
// and the "vqgan" generator's behaviour.
// Shapes: B batch, H x W image (32 x 48 in the fixture), h x w latent grid, E embed_dim (16), N n_embed (64).
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/io/weights.h"
#include "generators/generator.h"
#include "generators/vqgan/config.h"
#include "generators/vqgan/vq_model.h"
#include "generators/vqgan/vqgan_generator.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <fstream>
#include <iostream>

namespace clipguide::generators::vqgan {
namespace {

using test::error_of;

using test::fixture_dir;
using test::max_abs_diff;

constexpr double kAtol = 1e-4;  // fp32 on CPU; differences come from summation order only

clipguide::TensorMap expected_tensors() {
  return clipguide::read_safetensors(fixture_dir("vqgan") / "expected.safetensors").tensors;
}

// The message of the clipguide::Error `fn` throws ("" and a test failure when it throws none).
// ---------------------------------------------------------------------------------------------------------
// Parity: every output, every format.

struct ParityCase {
  std::string model;    // "vq" (VQModel) or "gumbel" (GumbelVQ)
  std::string weights;  // file name in the fixture folder
  bool yaml;            // config from <model>.yaml, else inferred from shapes
};

void PrintTo(const ParityCase& c, std::ostream* os) {
  *os << c.model << " from " << c.weights << (c.yaml ? " + yaml" : " (inferred config)");
}

std::string case_name(const ::testing::TestParamInfo<ParityCase>& info) {
  std::string name = info.param.model + "_" + info.param.weights + (info.param.yaml ? "_yaml" : "_inferred");
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

class VqganParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(VqganParity, MatchesTaming) {
  const auto& param = GetParam();
  auto dir = fixture_dir("vqgan");
  auto expected = expected_tensors();
  auto ref = [&](const std::string& key) { return expected.at(param.model + "." + key); };
  VqganLoadOptions options;
  if (param.yaml) options.config = dir / (param.model + ".yaml");
  auto model = load_vq_model(dir / param.weights, options);
  EXPECT_EQ(model->config().quantizer == QuantizerKind::kGumbel, param.model == "gumbel");
  const std::string label = "[" + param.model + " " + param.weights + (param.yaml ? " +yaml" : " inferred") + "] ";

  at::NoGradGuard no_grad;
  auto image = ref("image");                     // (1, 3, H, W) in [0, 1]
  auto h = model->encode_prequant(image * 2 - 1);  // (1, E, h, w)
  std::cout << label << "h max abs diff " << max_abs_diff(h, ref("h")) << "\n";
  EXPECT_TENSOR_CLOSE(h, ref("h"), kAtol, 0);
  auto q = model->encode(image * 2 - 1);
  EXPECT_TRUE(q.indices.equal(ref("indices"))) << label << "codebook indices differ";
  std::cout << label << "z_q max abs diff " << max_abs_diff(q.z_q, ref("z_q")) << "\n";
  EXPECT_TENSOR_CLOSE(q.z_q, ref("z_q"), kAtol, 0);
  if (param.model == "vq") {
    EXPECT_TENSOR_CLOSE(q.loss.reshape({1}), ref("emb_loss"), 1e-6, 1e-5);
  }
  auto decoded = model->decode(q.z_q);  // (1, 3, H, W)
  std::cout << label << "decoded max abs diff " << max_abs_diff(decoded, ref("decoded")) << "\n";
  EXPECT_TENSOR_CLOSE(decoded, ref("decoded"), kAtol, 0);
}

TEST_P(VqganParity, SynthAndGradientMatchVqganClip) {
  const auto& param = GetParam();
  auto dir = fixture_dir("vqgan");
  auto expected = expected_tensors();
  auto ref = [&](const std::string& key) { return expected.at(param.model + "." + key); };
  VqganLoadOptions load;
  if (param.yaml) load.config = dir / (param.model + ".yaml");
  GeneratorOptions options;
  options.width = 48;
  options.height = 32;
  options.batch = 2;
  VqganGenerator generator(load_vq_model(dir / param.weights, load), options);
  generator.load_state({{"z", ref("synth_z")}});
  auto image = generator.render();  // (2, 3, H, W)
  (image * ref("synth_weight")).sum().backward();
  const std::string label = "[" + param.model + " " + param.weights + (param.yaml ? " +yaml" : " inferred") + "] ";
  std::cout << label << "synth max abs diff " << max_abs_diff(image, ref("synth")) << ", grad_z max abs diff "
            << max_abs_diff(generator.z().grad(), ref("synth_grad_z")) << "\n";
  EXPECT_TENSOR_CLOSE(image, ref("synth"), kAtol, 0);
  // Gradients are sums over the whole decoder: allow a little relative slack on their larger values.
  EXPECT_TENSOR_CLOSE(generator.z().grad(), ref("synth_grad_z"), kAtol, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Formats, VqganParity,
                         ::testing::Values(ParityCase{"vq", "vq.ckpt", true}, ParityCase{"vq", "vq.ckpt", false},
                                           ParityCase{"vq", "vq.safetensors", false},
                                           ParityCase{"vq", "vq.safetensors", true},
                                           ParityCase{"gumbel", "gumbel.ckpt", true},
                                           ParityCase{"gumbel", "gumbel.ckpt", false},
                                           ParityCase{"gumbel", "gumbel.safetensors", false}),
                         case_name);

// ---------------------------------------------------------------------------------------------------------
// Config

void expect_same_config(const VqganConfig& a, const VqganConfig& b) {
  EXPECT_EQ(a.ch, b.ch);
  EXPECT_EQ(a.in_channels, b.in_channels);
  EXPECT_EQ(a.out_ch, b.out_ch);
  EXPECT_EQ(a.ch_mult, b.ch_mult);
  EXPECT_EQ(a.num_res_blocks, b.num_res_blocks);
  EXPECT_EQ(a.encoder_attn, b.encoder_attn);
  EXPECT_EQ(a.decoder_attn, b.decoder_attn);
  EXPECT_EQ(a.z_channels, b.z_channels);
  EXPECT_EQ(a.double_z, b.double_z);
  EXPECT_EQ(a.resamp_with_conv, b.resamp_with_conv);
  EXPECT_EQ(a.n_embed, b.n_embed);
  EXPECT_EQ(a.embed_dim, b.embed_dim);
  EXPECT_EQ(a.quantizer, b.quantizer);
}

TEST(VqganConfig, InferredFromShapesEqualsYaml) {
  auto dir = fixture_dir("vqgan");
  for (std::string m : {"vq", "gumbel"}) {
    SCOPED_TRACE(m);
    auto from_yaml = read_vqgan_yaml(dir / (m + ".yaml"));
    auto inferred = infer_vqgan_config(read_vqgan_weights(dir / (m + ".safetensors")));
    expect_same_config(inferred, from_yaml);
  }
  auto vq = read_vqgan_yaml(dir / "vq.yaml");
  EXPECT_EQ(vq.ch_mult, (std::vector<int64_t>{1, 1, 2}));
  EXPECT_EQ(vq.num_res_blocks, 2);
  EXPECT_EQ(vq.encoder_attn, (std::vector<bool>{false, true, false}));  // resolution 16 = level 1 of 32
  EXPECT_EQ(vq.decoder_attn, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(vq.size_factor(), 4);
}

TEST(VqganConfig, Net2NetTransformerFirstStage) {
  auto dir = test::temp_dir();
  // The VQModel config nested as a transformer's first stage, as in taming's cond_transformer configs.
  std::ifstream in(fixture_dir("vqgan") / "vq.yaml");
  std::string line, nested = "model:\n  target: taming.models.cond_transformer.Net2NetTransformer\n  params:\n"
                             "    first_stage_config:\n";
  std::getline(in, line);  // "model:"
  while (std::getline(in, line)) {
    if (line.rfind("  base_learning_rate", 0) == 0) continue;
    nested += "    " + line + "\n";
  }
  std::ofstream(dir / "net2net.yaml") << nested;
  expect_same_config(read_vqgan_yaml(dir / "net2net.yaml"), read_vqgan_yaml(fixture_dir("vqgan") / "vq.yaml"));
}

// The released checkpoints' architectures (imagenet f16, gumbel f8): every taming key with its shape, both
// from the YAML and inferred from the shapes alone. No weights needed.
TEST(VqganConfig, ReleasedArchitecturesHaveTamingKeys) {
  auto dir = fixture_dir("vqgan");
  for (std::string name : {"imagenet_f16_16384", "gumbel_f8_8192"}) {
    SCOPED_TRACE(name);
    auto shapes = clipguide::read_safetensors(dir / (name + ".shapes.safetensors")).tensors;
    auto config = read_vqgan_yaml(dir / (name + ".yaml"));
    clipguide::TensorMap meta;  // shape-only stand-ins for inference
    for (const auto& [key, shape] : shapes) {
      auto dims = shape.to(at::kLong).contiguous();
      meta[key] = at::empty(c10::IntArrayRef(dims.data_ptr<int64_t>(), dims.numel()), at::device(at::kMeta));
    }
    expect_same_config(infer_vqgan_config(meta), config);
    VQModel model(config);
    size_t matched = 0;
    for (const auto& item : model->named_parameters()) {
      auto it = meta.find(item.key());
      ASSERT_NE(it, meta.end()) << "C++ has " << item.key() << ", taming does not";
      EXPECT_EQ(it->second.sizes().vec(), item.value().sizes().vec()) << item.key();
      ++matched;
    }
    EXPECT_EQ(matched, meta.size()) << "taming has keys the C++ model lacks";
  }
}

TEST(VqganConfig, AttentionLevelsOfImagenetF16) {
  VqganConfig config;  // vqgan_imagenet_f16_16384: resolution 256, attn_resolutions [16]
  set_attention_from_resolutions(config, 256, {16});
  EXPECT_EQ(config.encoder_attn, (std::vector<bool>{false, false, false, false, true}));
  EXPECT_EQ(config.decoder_attn, (std::vector<bool>{false, false, false, false, true}));
  EXPECT_EQ(config.size_factor(), 16);
}

TEST(VqganConfig, YamlErrorsNameTheEntry) {
  auto dir = test::temp_dir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return dir / name;
  };
  auto unknown = write("a.yaml", "model:\n  target: taming.models.vqgan.EMAVQ\n  params: {}\n");
  EXPECT_NE(error_of([&] { read_vqgan_yaml(unknown); }).find("EMAVQ' is not supported"), std::string::npos);
  auto no_ch = write("b.yaml",
                     "model:\n  target: taming.models.vqgan.VQModel\n  params:\n    n_embed: 8\n    embed_dim: 4\n"
                     "    ddconfig: {ch_mult: [1], num_res_blocks: 1, z_channels: 4, resolution: 8, attn_resolutions: []}\n");
  auto message = error_of([&] { read_vqgan_yaml(no_ch); });
  EXPECT_NE(message.find("missing 'model.params.ddconfig.ch'"), std::string::npos) << message;
  EXPECT_NE(message.find("b.yaml"), std::string::npos) << message;
  EXPECT_NE(error_of([&] { read_vqgan_yaml(dir / "absent.yaml"); }).find("cannot open"), std::string::npos);
}

TEST(VqganConfig, SectionsThatAreNotMappingsAreNamed) {
  // Fuzzing found it: `params:` holding a value, not keys, made yaml-cpp throw out of the reader (BadSubscript
  // is not a clipguide::Error); every section (model, params, ddconfig, first_stage_config) is checked.
  auto dir = test::temp_dir();
  const std::string vq = "model:\n  target: taming.models.vqgan.VQModel\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model: 3\n", "'model' is not a mapping"},
      {vq + "  params: embed_\n", "'model.params' is not a mapping of keys (got the value 'embed_')"},
      {vq + "  params: [1, 2]\n", "'model.params' is not a mapping of keys (got a list)"},
      {vq + "  params:\n    n_embed: 8\n    embed_dim: 4\n    ddconfig: 7\n", "'model.params.ddconfig' is not"},
      {"model:\n  target: taming.models.cond_transformer.Net2NetTransformer\n  params:\n    first_stage_config: x\n",
       "'model.params.first_stage_config' is not"},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    std::ofstream(dir / "c.yaml") << text;
    const auto message = error_of([&] { read_vqgan_yaml(dir / "c.yaml"); });
    EXPECT_NE(message.find(expected), std::string::npos) << message;
    EXPECT_NE(message.find("c.yaml"), std::string::npos) << message;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loader errors

TEST(VqganLoad, CheckpointForeignClassesAreNotInstantiated) {
  // hyper_parameters holds omegaconf DictConfigs: the restricted reader records them, never builds them.
  auto file = clipguide::read_weights(fixture_dir("vqgan") / "vq.ckpt");
  EXPECT_EQ(file.format, clipguide::WeightFormat::kTorchZip);
  bool saw_dictconfig = false;
  for (const auto& name : file.skipped_classes) saw_dictconfig |= name.find("DictConfig") != std::string::npos;
  EXPECT_TRUE(saw_dictconfig);
}

TEST(VqganLoad, CheckpointExtrasAreSkipped) {
  auto tensors = read_vqgan_weights(fixture_dir("vqgan") / "vq.ckpt");
  EXPECT_EQ(tensors.count("loss.discriminator.main.0.weight"), 0u);
  EXPECT_EQ(tensors.count("encoder.conv_in.weight"), 1u);
  EXPECT_EQ(tensors.size(), read_vqgan_weights(fixture_dir("vqgan") / "vq.safetensors").size());
}

TEST(VqganLoad, MissingKeyIsNamed) {
  auto tensors = read_vqgan_weights(fixture_dir("vqgan") / "vq.safetensors");
  auto config = infer_vqgan_config(tensors);
  tensors.erase("encoder.mid.attn_1.q.weight");
  VQModel model(config);
  auto message = error_of([&] { load_vq_weights(*model, tensors, "test.ckpt"); });
  EXPECT_NE(message.find("missing 1 key(s): 'encoder.mid.attn_1.q.weight' (expected [64, 64, 1, 1])"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("test.ckpt"), std::string::npos) << message;
}

TEST(VqganLoad, WrongShapeAndUnexpectedKeysAreNamed) {
  auto tensors = read_vqgan_weights(fixture_dir("vqgan") / "vq.safetensors");
  auto config = infer_vqgan_config(tensors);
  VQModel model(config);
  auto wrong = tensors;
  wrong["quant_conv.weight"] = at::zeros({16, 8, 1, 1});
  auto message = error_of([&] { load_vq_weights(*model, wrong, "w"); });
  EXPECT_NE(message.find("key 'quant_conv.weight': got [16, 8, 1, 1], expected [16, 16, 1, 1]"), std::string::npos)
      << message;
  auto extra = tensors;
  extra["decoder.up.9.block.0.conv1.weight"] = at::zeros({1});
  message = error_of([&] { load_vq_weights(*model, extra, "w"); });
  EXPECT_NE(message.find("unexpected key(s)"), std::string::npos) << message;
  EXPECT_NE(message.find("'decoder.up.9.block.0.conv1.weight'"), std::string::npos) << message;
  // The YAML of one model with the weights of another: a shape error, not silent garbage.
  auto dir = fixture_dir("vqgan");
  EXPECT_NE(error_of([&] { load_vq_model(dir / "gumbel.ckpt", {dir / "vq.yaml"}); }).find("gumbel.ckpt"),
            std::string::npos);
}

TEST(VqganLoad, NotAVqganIsReported) {
  clipguide::TensorMap tensors{{"visual.conv1.weight", at::zeros({8, 3, 4, 4})}};
  auto message = error_of([&] { infer_vqgan_config(tensors); });
  EXPECT_NE(message.find("'encoder.conv_in.weight'"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------------------
// The generator

GeneratorOptions fixture_options(const std::string& model = "vq") {
  GeneratorOptions options;
  options.weights = fixture_dir("vqgan") / (model + ".ckpt");
  options.width = 48;
  options.height = 32;
  options.batch = 2;
  options.seed = 7;
  return options;
}

TEST(VqganGenerator, RenderShapeRangeAndLatent) {
  auto generator = GeneratorRegistry::create("vqgan", fixture_options());
  EXPECT_EQ(generator->name(), "vqgan");
  EXPECT_EQ(generator->size_factor(), 4);
  EXPECT_EQ(generator->latent_shape(), (std::vector<int64_t>{2, 16, 8, 12}));
  auto image = generator->render();
  EXPECT_EQ(image.sizes().vec(), (std::vector<int64_t>{2, 3, 32, 48}));
  EXPECT_GE(image.min().item<float>(), 0.0f);
  EXPECT_LE(image.max().item<float>(), 1.0f);
  ASSERT_EQ(generator->parameters().size(), 1u);
  EXPECT_TRUE(generator->parameters()[0].requires_grad());
}

TEST(VqganGenerator, GradientReachesLatentThroughQuantiser) {
  for (std::string m : {"vq", "gumbel"}) {
    SCOPED_TRACE(m);
    auto generator = GeneratorRegistry::create("vqgan", fixture_options(m));
    generator->render().mean().backward();
    auto grad = generator->parameters()[0].grad();
    ASSERT_TRUE(grad.defined());
    EXPECT_GT(grad.abs().sum().item<double>(), 0.0);
    EXPECT_TRUE(grad.isfinite().all().item<bool>());
  }
}

TEST(VqganGenerator, InitRandomUsesCodebookEntries) {
  VqganGenerator generator(fixture_options());
  auto codebook = generator.model()->codebook().detach();  // (N, E)
  auto z = generator.z().detach().permute({0, 2, 3, 1}).reshape({-1, codebook.size(1)});  // (B*h*w, E)
  auto nearest = (z.unsqueeze(1) - codebook.unsqueeze(0)).abs().sum(2).min(1);  // exact rows: distance 0
  EXPECT_EQ(std::get<0>(nearest).max().item<float>(), 0.0f);
  auto first = generator.z().detach().clone();
  generator.init_random(7);
  EXPECT_TRUE(generator.z().detach().equal(first));
  generator.init_random(8);
  EXPECT_FALSE(generator.z().detach().equal(first));
}

TEST(VqganGenerator, PostStepClampsToCodebookRange) {
  VqganGenerator generator(fixture_options());
  auto z = generator.z().detach().clone();
  z.index_put_({0}, 100.0);
  z.index_put_({1}, -100.0);
  generator.load_state({{"z", z}});
  generator.post_step();
  auto clamped = generator.z().detach();
  EXPECT_TRUE(clamped[0].equal(generator.z_max()[0].expand_as(clamped[0])));
  EXPECT_TRUE(clamped[1].equal(generator.z_min()[0].expand_as(clamped[1])));
  auto codebook = generator.model()->codebook().detach();
  EXPECT_TRUE(generator.z_max().flatten().equal(std::get<0>(codebook.max(0))));
}

TEST(VqganGenerator, InitFromImageEncodesLikeTaming) {
  auto expected = expected_tensors();
  VqganGenerator generator(fixture_options());
  generator.init_from_image(expected.at("vq.image"));  // (1, 3, 32, 48), broadcast to the batch of 2
  auto z = generator.z().detach();
  std::cout << "init_from_image z max abs diff " << max_abs_diff(z[1], expected.at("vq.z_q")[0]) << "\n";
  EXPECT_TENSOR_CLOSE(z[1].unsqueeze(0), expected.at("vq.z_q"), kAtol, 0);
  // Rendering the encoded image gives taming's reconstruction, mapped to [0, 1].
  auto image = generator.render().detach();
  EXPECT_TENSOR_CLOSE(image[0].unsqueeze(0), expected.at("vq.decoded").add(1).div(2).clamp(0, 1), kAtol, 0);
  // Another size is resized to the generator's.
  generator.init_from_image(at::rand({1, 3, 20, 30}));
  EXPECT_EQ(generator.latent_shape(), (std::vector<int64_t>{2, 16, 8, 12}));
  EXPECT_THROW(generator.init_from_image(at::rand({3, 3, 32, 48})), Error);
}

TEST(VqganGenerator, StateRoundTrip) {
  VqganGenerator generator(fixture_options());
  auto saved = generator.state();
  auto param = generator.parameters()[0];
  generator.init_random(99);
  EXPECT_FALSE(generator.z().detach().equal(saved.at("z")));
  generator.load_state(saved);
  EXPECT_TRUE(generator.z().detach().equal(saved.at("z")));
  EXPECT_TRUE(generator.parameters()[0].is_same(param));  // same tensor: optimisers keep working
  auto message = error_of([&] { generator.load_state({{"z", at::zeros({1, 16, 8, 12})}}); });
  EXPECT_NE(message.find("got [1, 16, 8, 12], expected [2, 16, 8, 12]"), std::string::npos) << message;
  EXPECT_THROW(generator.load_state({}), Error);
}

TEST(VqganGenerator, OptionErrors) {
  GeneratorOptions no_weights;
  auto message = error_of([&] { GeneratorRegistry::create("vqgan", no_weights); });
  EXPECT_NE(message.find("no weights"), std::string::npos) << message;
  auto tiny = fixture_options();
  tiny.width = 3;
  message = error_of([&] { GeneratorRegistry::create("vqgan", tiny); });
  EXPECT_NE(message.find(">= 4"), std::string::npos) << message;
}

}  // namespace
}  // namespace clipguide::generators::vqgan
