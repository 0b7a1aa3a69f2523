// Tests for the CLIP model (clipnet/clip_model.h), its config, loading and the Hugging Face mapping.
// The parity test loads every file written by tests/reference/clip_parity.py (openai-clip TorchScript and
// state dicts, open_clip checkpoints, safetensors and hub folders, a transformers CLIPModel folder) through
// load_clip and compares embeddings, logits and d(cosine)/d(pixels) with the reference packages' outputs.
//
// Shapes: B batch, H x W image, L tokens, E embed dim.
#include "clipnet/checkpoint.h"
#include "clipnet/clip_model.h"
#include "clipnet/config.h"
#include "clipnet/hf_clip.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>

namespace clipguide::clipnet {
namespace {

using test::fixture_dir;

constexpr double kAtol = 1e-4;  // fp32 parity

// The models here are tiny: a second OpenMP thread only spins, which on a shared 2-core CI box turns
// 50 ms forwards into seconds.
const bool kSingleThreaded = [] {
  at::set_num_threads(1);
  return true;
}();

int64_t parameter_count(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

TensorMap state_dict(torch::nn::Module& module) {
  TensorMap out;
  for (const auto& item : module.named_parameters()) out[item.key()] = item.value().detach().clone();
  for (const auto& item : module.named_buffers()) out[item.key()] = item.value().detach().clone();
  return out;
}

// Small configs with OpenAI's size rules (heads = width / 64), so infer_config can recover them.
ClipConfig small_vit_config() {
  ClipConfig c;
  c.name = "small-vit";
  c.embed_dim = 32;
  c.quick_gelu = true;
  c.vision.image_size = 32;
  c.vision.layers = {2};
  c.vision.width = 128;
  c.vision.patch_size = 8;
  c.text = {16, 1000, 64, 1, 2, 4.0};
  return c;
}

ClipConfig small_resnet_config() {
  ClipConfig c = small_vit_config();
  c.name = "small-rn";
  c.vision.image_size = 64;
  c.vision.layers = {1, 2, 1, 1};
  c.vision.width = 16;
  c.vision.patch_size = 0;
  return c;
}

std::string thrown_text(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return error_text(e);
  }
  return "(nothing thrown)";
}

// --- config ------------------------------------------------------------------------------------------------
TEST(ClipConfig, JsonRoundTripOfEveryBuiltin) {
  auto names = ClipConfig::builtin_names();
  ASSERT_EQ(names.size(), 9u);
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    auto config = ClipConfig::builtin(name);
    EXPECT_EQ(config.name, name);
    EXPECT_TRUE(config.quick_gelu);
    auto again = ClipConfig::from_json_text(config.to_json_text());
    EXPECT_EQ(again.to_json(), config.to_json());
  }
  auto rn = ClipConfig::builtin("RN50x4");
  EXPECT_TRUE(rn.vision.is_resnet());
  EXPECT_EQ(rn.vision.layers, (std::vector<int64_t>{4, 6, 10, 6}));
  EXPECT_EQ(rn.vision.image_size, 288);
  EXPECT_EQ(rn.vision.heads(), 40);  // 80 * 32 / 64
  EXPECT_EQ(rn.embed_dim, 640);
  EXPECT_EQ(rn.text.heads, 10);
  auto vit = ClipConfig::builtin("ViT-L-14-336");
  EXPECT_FALSE(vit.vision.is_resnet());
  EXPECT_EQ(vit.vision.patch_size, 14);
  EXPECT_EQ(vit.vision.image_size, 336);
  EXPECT_EQ(vit.vision.heads(), 16);
  EXPECT_DOUBLE_EQ(vit.preprocess.mean[0], 0.48145466);
  EXPECT_EQ(vit.preprocess.interpolation, "bicubic");
}

TEST(ClipConfig, ReadsOpenClipSchemaAndWrapper) {
  // open_clip's RN50.json: patch_size null, no quick_gelu (false), no preprocess_cfg (OpenAI's constants).
  auto rn = ClipConfig::from_json_text(R"({"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3],
      "width": 64, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512,
      "heads": 8, "layers": 12}})");
  EXPECT_FALSE(rn.quick_gelu);
  EXPECT_EQ(rn.vision.patch_size, 0);
  EXPECT_DOUBLE_EQ(rn.preprocess.std[2], 0.27577711);
  // open_clip_config.json of a hub repo: {"model_cfg": ..., "preprocess_cfg": ...}.
  auto hub = ClipConfig::from_json_text(R"({"model_cfg": {"embed_dim": 512, "quick_gelu": true,
      "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": {"width": 512,
      "heads": 8, "layers": 12}}, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
      "interpolation": "bilinear", "resize_mode": "squash"}})");
  EXPECT_TRUE(hub.quick_gelu);
  EXPECT_EQ(hub.vision.layers, (std::vector<int64_t>{12}));
  EXPECT_DOUBLE_EQ(hub.preprocess.mean[1], 0.5);
  EXPECT_EQ(hub.preprocess.resize_mode, "squash");
  EXPECT_NE(thrown_text([] { ClipConfig::from_json_text(R"({"embed_dim": 1})"); }).find("vision_cfg"), std::string::npos);
  EXPECT_NE(thrown_text([] { ClipConfig::builtin("ViT-Z-99"); }).find("ViT-B-32"), std::string::npos);
  EXPECT_EQ(ClipConfig::builtin("ViT-B/32").name, "ViT-B-32");
  EXPECT_EQ(ClipConfig::builtin("ViT-L/14@336px").name, "ViT-L-14-336");
}

TEST(ClipConfig, BuiltinsHaveOpenAIParameterCounts) {
  // Counts of openai-clip's clip.model.CLIP for the same sizes.
  for (const auto& [name, expected] : std::vector<std::pair<std::string, int64_t>>{{"ViT-B-32", 151277313},
                                                                                   {"RN50", 102007137}}) {
    ClipModel model(ClipConfig::builtin(name));
    EXPECT_EQ(parameter_count(*model), expected) << name;
  }
}

TEST(ClipConfig, InferConfigRecoversSizes) {
  for (const auto& config : {small_vit_config(), small_resnet_config()}) {
    SCOPED_TRACE(config.name);
    ClipModel model(config);
    auto sd = state_dict(*model);
    sd["input_resolution"] = at::tensor(config.vision.image_size);
    auto inferred = infer_config(sd);
    inferred.name = config.name;
    EXPECT_EQ(inferred.to_json(), config.to_json());
  }
  ClipModel model(small_vit_config());
  auto sd = state_dict(*model);
  sd.erase("ln_final.weight");
  EXPECT_NE(thrown_text([&] { infer_config(sd); }).find("'ln_final.weight'"), std::string::npos);
  sd = state_dict(*model);
  sd.erase("visual.conv1.weight");
  EXPECT_NE(thrown_text([&] { infer_config(sd); }).find("'visual.conv1.weight'"), std::string::npos);
}

TEST(ClipConfig, InferConfigAgreesWithEveryBuiltin) {
  // The keys and shapes build_model reads, as meta tensors (no memory), laid out from each built-in config:
  // shows the shipped JSONs follow OpenAI's rules (heads = width / 64, image size from positions).
  for (const auto& name : ClipConfig::builtin_names()) {
    SCOPED_TRACE(name);
    const auto config = ClipConfig::builtin(name);
    const auto& v = config.vision;
    const auto& t = config.text;
    auto meta = [](std::vector<int64_t> shape) { return at::empty(shape, at::TensorOptions().device(at::kMeta)); };
    TensorMap sd;
    if (v.is_resnet()) {
      for (int b = 0; b < 4; ++b)
        for (int64_t i = 0; i < v.layers[b]; ++i)
          sd["visual.layer" + std::to_string(b + 1) + "." + std::to_string(i) + ".conv1.weight"] =
              meta({v.width << b, 1, 1, 1});
      const int64_t s = v.image_size / 32;
      sd["visual.attnpool.positional_embedding"] = meta({s * s + 1, v.width * 32});
    } else {
      const int64_t grid = v.image_size / v.patch_size;
      sd["visual.proj"] = meta({v.width, config.embed_dim});
      sd["visual.conv1.weight"] = meta({v.width, 3, v.patch_size, v.patch_size});
      sd["visual.positional_embedding"] = meta({grid * grid + 1, v.width});
      for (int64_t i = 0; i < v.layers[0]; ++i)
        sd["visual.transformer.resblocks." + std::to_string(i) + ".attn.in_proj_weight"] = meta({3 * v.width, v.width});
    }
    sd["text_projection"] = meta({t.width, config.embed_dim});
    sd["positional_embedding"] = meta({t.context_length, t.width});
    sd["token_embedding.weight"] = meta({t.vocab_size, t.width});
    sd["ln_final.weight"] = meta({t.width});
    for (int64_t i = 0; i < t.layers; ++i) sd["transformer.resblocks." + std::to_string(i) + ".ln_1.weight"] = meta({t.width});
    auto inferred = infer_config(sd);
    inferred.name = config.name;
    EXPECT_EQ(inferred.to_json(), config.to_json());
  }
}

// --- modules -----------------------------------------------------------------------------------------------
TEST(ClipModel, NamesAreOpenAIKeys) {
  ClipModel vit(small_vit_config());
  auto params = vit->named_parameters();
  for (const char* key : {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                          "visual.ln_pre.weight", "visual.transformer.resblocks.1.attn.in_proj_weight",
                          "visual.transformer.resblocks.1.attn.in_proj_bias",
                          "visual.transformer.resblocks.1.attn.out_proj.weight",
                          "visual.transformer.resblocks.0.mlp.c_fc.bias", "visual.transformer.resblocks.0.ln_2.bias",
                          "visual.ln_post.bias", "visual.proj", "token_embedding.weight", "positional_embedding",
                          "transformer.resblocks.1.mlp.c_proj.weight", "ln_final.weight", "text_projection",
                          "logit_scale"}) {
    EXPECT_NE(params.find(key), nullptr) << key;
  }
  ClipModel rn(small_resnet_config());
  auto rn_params = rn->named_parameters();
  for (const char* key : {"visual.conv3.weight", "visual.bn2.bias", "visual.layer2.0.downsample.0.weight",
                          "visual.layer2.0.downsample.1.weight", "visual.layer2.1.conv2.weight",
                          "visual.attnpool.positional_embedding", "visual.attnpool.q_proj.weight",
                          "visual.attnpool.c_proj.bias"}) {
    EXPECT_NE(rn_params.find(key), nullptr) << key;
  }
  EXPECT_NE(rn->named_buffers().find("visual.layer1.0.bn3.running_var"), nullptr);
}

TEST(ClipModel, ShapesGradientAndOtherResolutions) {
  for (const auto& config : {small_vit_config(), small_resnet_config()}) {
    SCOPED_TRACE(config.name);
    ClipModel model(config);
    model->eval();
    const int64_t side = config.vision.image_size;
    auto image = at::randn({2, 3, side, side}).requires_grad_(true);  // (B, 3, H, W)
    auto tokens = at::randint(1, 900, {3, config.text.context_length}, at::kLong);
    auto [logits_per_image, logits_per_text] = model->forward(image, tokens);
    EXPECT_EQ(logits_per_image.sizes(), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(logits_per_text.sizes(), (std::vector<int64_t>{3, 2}));
    logits_per_image.sum().backward();
    ASSERT_TRUE(image.grad().defined());
    EXPECT_GT(image.grad().abs().max().item<double>(), 0.0);
    // Positions resized for a larger input.
    auto big = model->encode_image(at::randn({1, 3, side * 2, side * 2}));
    EXPECT_EQ(big.sizes(), (std::vector<int64_t>{1, config.embed_dim}));
    EXPECT_TRUE(big.isfinite().all().item<bool>());
  }
}

// encode_text cuts the padding after the batch's last EOT (causal attention: it cannot change the pooled
// outputs). A caption's embedding, and its gradient with respect to the weights, must not depend on how long
// the other captions in its batch are, nor on how much padding it carries.
TEST(ClipModel, TextEmbeddingDoesNotDependOnPaddingOrBatchmates) {
  at::manual_seed(0);
  ClipModel model(small_vit_config());
  model->eval();
  const int64_t context = small_vit_config().text.context_length;  // 16; EOT id 999 is the largest
  auto caption = [&](int64_t n) {  // start token, n words, EOT, zero padding: (1, context)
    auto t = at::zeros({1, context}, at::kLong);
    t[0][0] = 998;
    for (int64_t i = 1; i <= n; ++i) t[0][i] = 10 * i + n;
    t[0][n + 1] = 999;
    return t;
  };
  auto alone = model->encode_text(caption(3));                                       // cut to 5 positions
  auto padded = model->encode_text(at::cat({caption(3), caption(12)}));              // cut to 14
  auto full = model->encode_text(at::cat({caption(3), caption(context - 2)}));       // nothing cut
  auto unpadded = model->encode_text(caption(3).narrow(1, 0, 5));                    // given without padding
  std::printf("max abs diff: batch-mate 12 words %.3g, full context %.3g, no padding %.3g\n",
              (alone[0] - padded[0]).abs().max().item<double>(), (alone[0] - full[0]).abs().max().item<double>(),
              (alone[0] - unpadded[0]).abs().max().item<double>());
  EXPECT_TENSOR_CLOSE(alone[0], padded[0], 1e-5, 1e-5);  // float sums in another order
  EXPECT_TENSOR_CLOSE(alone[0], full[0], 1e-5, 1e-5);
  EXPECT_TENSOR_CLOSE(alone[0], unpadded[0], 1e-6, 0);
  // Gradients too: the token embedding of the short caption's words, cut or not.
  model->zero_grad();
  model->encode_text(caption(3)).sum().backward();
  auto cut = model->token_embedding->weight.grad().clone();
  model->zero_grad();
  model->encode_text(at::cat({caption(3), caption(context - 2)})).narrow(0, 0, 1).sum().backward();
  // Float sums in another order through the text tower's backward: up to 3.4e-5 seen on gradients near 1;
  // a batch-mate leaking into the caption would move them by far more.
  EXPECT_TENSOR_CLOSE(cut, model->token_embedding->weight.grad(), 1e-4, 1e-4);
}

// encode_text runs the text tower on packed rows (each caption's positions up to its EOT). The embeddings and
// every parameter's gradient equal those of the whole (B, L) grid through Transformer::forward, also with
// gradient checkpointing (whose backward runs the packed blocks again after encode_text has returned).
TEST(ClipModel, PackedTextTowerMatchesTheWholeGrid) {
  for (bool checkpointing : {false, true}) {
    SCOPED_TRACE(checkpointing ? "grad checkpointing" : "plain");
    at::manual_seed(0);
    ClipModel model(small_vit_config());
    model->transformer->grad_checkpointing = checkpointing;
    const int64_t context = small_vit_config().text.context_length;
    auto tokens = at::randint(1, 990, {4, context}, at::kLong);
    const int64_t lengths[] = {3, 11, 1, 7};  // positions up to and including the EOT (id 999, the largest)
    for (int64_t i = 0; i < 4; ++i) {
      tokens[i][lengths[i] - 1] = 999;
      tokens[i].narrow(0, lengths[i], context - lengths[i]).zero_();
    }
    auto whole_grid = [&] {
      auto x = model->token_embedding(tokens) + model->positional_embedding;  // (B, L, C)
      x = model->ln_final(model->transformer(x, /*causal=*/true));
      return at::matmul(x.index_select(1, tokens.argmax(-1)).diagonal(0, 0, 1).t(), model->text_projection);  // (B, E)
    };
    auto parameter_grads = [&](const at::Tensor& out, const at::Tensor& weights) {
      model->zero_grad();
      (out * weights).sum().backward();
      std::vector<at::Tensor> grads;
      for (const auto& p : model->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
      return grads;
    };
    auto weights = at::randn({4, small_vit_config().embed_dim});
    auto packed = model->encode_text(tokens);
    auto reference = whole_grid();
    EXPECT_TENSOR_CLOSE(packed, reference, 1e-5, 1e-5);
    auto packed_grads = parameter_grads(model->encode_text(tokens), weights);
    auto reference_grads = parameter_grads(whole_grid(), weights);
    ASSERT_EQ(packed_grads.size(), reference_grads.size());
    for (size_t i = 0; i < packed_grads.size(); ++i) {
      ASSERT_EQ(packed_grads[i].defined(), reference_grads[i].defined()) << "parameter " << i;
      if (packed_grads[i].defined()) {
        EXPECT_TENSOR_CLOSE(packed_grads[i], reference_grads[i], 1e-5, 1e-4);
      }
    }
  }
}

// The ViT pools its class token, so encode_image runs the last block for that row only
// (Transformer::forward_first_token). Values and the gradients of the input and of every parameter equal
// those of the whole sequence through Transformer::forward, also with gradient checkpointing.
TEST(ClipModel, FirstTokenTransformerMatchesTheWholeSequence) {
  for (bool checkpointing : {false, true}) {
    SCOPED_TRACE(checkpointing ? "grad checkpointing" : "plain");
    at::manual_seed(0);
    Transformer transformer(TransformerOptions(64, 3, 2).activation(Activation::kQuickGelu));
    transformer->grad_checkpointing = checkpointing;
    auto input = at::randn({3, 17, 64});
    auto weights = at::randn({3, 64});
    auto run = [&](bool first_only) {
      auto x = input.clone().requires_grad_(true);
      auto out = first_only ? transformer->forward_first_token(x) : transformer->forward(x).select(1, 0);  // (B, C)
      transformer->zero_grad();
      (out * weights).sum().backward();
      std::vector<at::Tensor> grads{out.detach(), x.grad()};
      for (const auto& p : transformer->parameters()) grads.push_back(p.grad().clone());
      return grads;
    };
    auto first = run(true), whole = run(false);
    ASSERT_EQ(first.size(), whole.size());
    for (size_t i = 0; i < first.size(); ++i) {
      SCOPED_TRACE(i == 0 ? "output" : i == 1 ? "input gradient" : "parameter gradient");
      EXPECT_TENSOR_CLOSE(first[i], whole[i], 1e-5, 1e-5);
    }
  }
}

TEST(ClipModel, HalfPrecisionKeepsLayerNormInFloat) {
  ClipModel model(small_vit_config());
  model->eval();
  auto image = at::randn({1, 3, 32, 32});
  auto tokens = at::randint(1, 900, {1, 16}, at::kLong);
  at::Tensor reference;
  {
    at::NoGradGuard no_grad;
    reference = model->encode_text(tokens);
  }
  model->to(at::kHalf);
  EXPECT_EQ(model->dtype(), at::kHalf);
  at::NoGradGuard no_grad;
  auto half_image = model->encode_image(image);
  EXPECT_EQ(half_image.scalar_type(), at::kHalf);
  auto half_text = model->encode_text(tokens);
  EXPECT_TENSOR_CLOSE(half_text.to(at::kFloat), reference, 2e-2, 2e-2);
}

// --- loading -----------------------------------------------------------------------------------------------
TEST(LoadStateDict, StrictErrorsNameKeysAndShapes) {
  ClipModel model(small_vit_config());
  auto sd = state_dict(*model);

  auto missing = sd;
  missing.erase("visual.ln_post.bias");
  auto text = thrown_text([&] { load_state_dict(*model, missing, /*strict=*/true); });
  EXPECT_NE(text.find("missing 1 key(s) 'visual.ln_post.bias'"), std::string::npos) << text;

  auto wrong = sd;
  wrong["visual.proj"] = at::zeros({128, 31});
  text = thrown_text([&] { load_state_dict(*model, wrong, /*strict=*/false); });
  EXPECT_EQ(text, "key 'visual.proj': got [128, 31], expected [128, 32]");

  auto extra = sd;
  extra["visual.extra.weight"] = at::zeros({2});
  text = thrown_text([&] { load_state_dict(*model, extra, /*strict=*/true); });
  EXPECT_NE(text.find("unexpected 1 key(s) 'visual.extra.weight'"), std::string::npos) << text;

  // Non-strict: reported, not thrown. OpenAI's attributes are ignored either way.
  missing["visual.extra.weight"] = at::zeros({2});
  missing["input_resolution"] = at::tensor(224);
  missing["transformer.resblocks.0.attn_mask"] = at::zeros({16, 16});
  auto report = load_state_dict(*model, missing, /*strict=*/false);
  EXPECT_EQ(report.missing_keys, (std::vector<std::string>{"visual.ln_post.bias"}));
  EXPECT_EQ(report.unexpected_keys, (std::vector<std::string>{"visual.extra.weight"}));
  EXPECT_EQ(report.ignored_keys.size(), 2u);

  // fp16 weights load into an fp32 model.
  auto half = sd;
  for (auto& [key, value] : half)
    if (value.is_floating_point()) value = (value + 1).to(at::kHalf);
  auto full = load_state_dict(*model, half, /*strict=*/true);
  EXPECT_EQ(full.loaded, static_cast<int64_t>(sd.size()));
  EXPECT_EQ(model->visual_vit->proj.scalar_type(), at::kFloat);
  EXPECT_TENSOR_CLOSE(model->visual_vit->proj, (sd["visual.proj"] + 1).to(at::kHalf).to(at::kFloat), 0.0, 0.0);
}

TEST(HfClip, MapsNamesAndConfig) {
  TensorMap hf;
  const int64_t c = 4;
  auto q = at::full({c, c}, 1.0), k = at::full({c, c}, 2.0), v = at::full({c, c}, 3.0);
  hf["text_model.encoder.layers.1.self_attn.q_proj.weight"] = q;
  hf["text_model.encoder.layers.1.self_attn.k_proj.weight"] = k;
  hf["text_model.encoder.layers.1.self_attn.v_proj.weight"] = v;
  hf["vision_model.encoder.layers.0.self_attn.q_proj.bias"] = at::full({c}, 1.0);
  hf["vision_model.encoder.layers.0.self_attn.k_proj.bias"] = at::full({c}, 2.0);
  hf["vision_model.encoder.layers.0.self_attn.v_proj.bias"] = at::full({c}, 3.0);
  hf["vision_model.encoder.layers.0.mlp.fc1.weight"] = at::zeros({8, c});
  hf["vision_model.encoder.layers.0.layer_norm2.bias"] = at::zeros({c});
  hf["vision_model.pre_layrnorm.weight"] = at::ones({c});
  hf["vision_model.embeddings.position_ids"] = at::arange(5).unsqueeze(0);
  hf["visual_projection.weight"] = at::arange(6.0).reshape({2, 3});  // (E, C)
  hf["text_model.final_layer_norm.bias"] = at::zeros({c});
  hf["something.else"] = at::zeros({1});
  EXPECT_TRUE(is_hf_clip_state_dict(hf));
  auto oa = hf_to_openai(hf);
  EXPECT_FALSE(is_hf_clip_state_dict(oa));
  EXPECT_TENSOR_CLOSE(oa.at("transformer.resblocks.1.attn.in_proj_weight"), at::cat({q, k, v}, 0), 0.0, 0.0);
  EXPECT_TENSOR_CLOSE(oa.at("visual.transformer.resblocks.0.attn.in_proj_bias"),
                      at::cat({at::full({c}, 1.0), at::full({c}, 2.0), at::full({c}, 3.0)}), 0.0, 0.0);
  EXPECT_TRUE(oa.count("visual.transformer.resblocks.0.mlp.c_fc.weight"));
  EXPECT_TRUE(oa.count("visual.transformer.resblocks.0.ln_2.bias"));
  EXPECT_TRUE(oa.count("visual.ln_pre.weight"));
  EXPECT_TRUE(oa.count("ln_final.bias"));
  EXPECT_TRUE(oa.count("something.else"));
  EXPECT_EQ(oa.count("vision_model.embeddings.position_ids"), 0u);
  EXPECT_TENSOR_CLOSE(oa.at("visual.proj"), at::arange(6.0).reshape({2, 3}).t(), 0.0, 0.0);  // (C, E)

  hf.erase("text_model.encoder.layers.1.self_attn.k_proj.weight");
  EXPECT_NE(thrown_text([&] { hf_to_openai(hf); }).find("k_proj"), std::string::npos);

  // config.json as save_pretrained writes it: only non-default values.
  auto config = config_from_hf(nlohmann::json::parse(R"({"model_type": "clip", "projection_dim": 768,
      "text_config": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
      "vision_config": {"hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24,
                        "intermediate_size": 4096, "patch_size": 14}})"));
  EXPECT_TRUE(config.quick_gelu);
  EXPECT_EQ(config.embed_dim, 768);
  EXPECT_EQ(config.text.width, 768);
  EXPECT_EQ(config.text.heads, 12);
  EXPECT_EQ(config.text.layers, 12);
  EXPECT_EQ(config.vision.layers, (std::vector<int64_t>{24}));
  EXPECT_EQ(config.vision.heads(), 16);
  EXPECT_EQ(config.vision.image_size, 224);
  EXPECT_EQ(config.vision.patch_size, 14);
  EXPECT_DOUBLE_EQ(config.vision.mlp_ratio, 4.0);
  EXPECT_EQ(config.to_json()["vision_cfg"], ClipConfig::builtin("ViT-L-14").to_json()["vision_cfg"]);
  EXPECT_NE(thrown_text([] {
              config_from_hf(nlohmann::json::parse(
                  R"({"text_config": {"hidden_act": "gelu"}, "vision_config": {"hidden_act": "quick_gelu"}})"));
            }).find("hidden_act"),
            std::string::npos);
}

TEST(LoadClip, ErrorsNameThePath) {
  auto text = thrown_text([] { load_clip("/nonexistent/model.pt"); });
  EXPECT_NE(text.find("/nonexistent/model.pt"), std::string::npos) << text;
  ClipLoadOptions options;
  options.config = "NotAModel";
  auto dir = test::temp_dir();
  text = thrown_text([&] { load_clip(dir, options); });
  EXPECT_NE(text.find(dir.string()), std::string::npos) << text;
}

// --- parity with the reference packages --------------------------------------------------------------------
TEST(ClipParity, EveryFormatMatchesReference) {
  const auto dir = fixture_dir("clip_parity");
  ASSERT_FALSE(dir.empty());
  std::ifstream in(dir / "cases.json");
  ASSERT_TRUE(in) << "no cases.json in " << dir;
  auto manifest = nlohmann::json::parse(in);
  ASSERT_GE(manifest["cases"].size(), 10u);
  for (const auto& c : manifest["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    ClipLoadOptions options;
    if (!c["config"].is_null()) options.config = (dir / c["config"].get<std::string>()).string();
    const auto start = std::chrono::steady_clock::now();
    LoadedClip loaded;
    try {
      loaded = load_clip(dir / c["weights"].get<std::string>(), options);
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": load_clip failed: " << error_text(e);
      continue;
    }
    const auto load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    auto expected = read_safetensors(dir / c["expected"].get<std::string>()).tensors;
    auto& model = loaded.model;
    EXPECT_FALSE(model->is_training());
    const auto image = expected.at("image").clone().requires_grad_(true);  // (B, 3, H, W)
    const auto tokens = expected.at("tokens");                             // (B, L)

    auto image_emb = model->encode_image(image);  // (B, E)
    auto text_emb = model->encode_text(tokens);   // (B, E)
    auto image_unit = image_emb / image_emb.norm(2, {1}, true);
    auto text_unit = text_emb / text_emb.norm(2, {1}, true);
    (image_unit * text_unit.narrow(0, 0, 1)).sum().backward();  // sum_b cos(image_emb[b], text_emb[0])
    auto grad = image.grad();
    at::Tensor logits;
    {
      at::NoGradGuard no_grad;
      logits = std::get<0>(model->forward(image.detach(), tokens));
    }
    // Gradients of small random models are tiny; compare them also relative to their largest element.
    const double grad_scale = expected.at("grad").abs().max().item<double>();
    std::cout << "[" << name << "] " << loaded.source_description << " (loaded in " << load_ms << " ms, "
              << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() - load_ms
              << " ms to run)\n"
              << "  max abs diff: image_emb " << test::max_abs_diff(image_emb, expected.at("image_emb"))
              << ", text_emb " << test::max_abs_diff(text_emb, expected.at("text_emb")) << ", logits_per_image "
              << test::max_abs_diff(logits, expected.at("logits_per_image")) << ", grad "
              << test::max_abs_diff(grad, expected.at("grad")) << " (relative to max |grad| " << grad_scale << ": "
              << test::max_abs_diff(grad, expected.at("grad")) / grad_scale << ")\n";
    EXPECT_TENSOR_CLOSE(image_emb, expected.at("image_emb"), kAtol, 0.0);
    EXPECT_TENSOR_CLOSE(text_emb, expected.at("text_emb"), kAtol, 0.0);
    EXPECT_TENSOR_CLOSE(logits, expected.at("logits_per_image"), kAtol, 0.0);
    EXPECT_TENSOR_CLOSE(grad, expected.at("grad"), kAtol, 0.0);
    EXPECT_TENSOR_CLOSE(grad / grad_scale, expected.at("grad") / grad_scale, kAtol, 0.0);
    if (name.find("hub_folder") != std::string::npos) {
      EXPECT_DOUBLE_EQ(loaded.config.preprocess.mean[0], 0.5);  // from open_clip_config.json
    }
    if (name == "hf_clip_folder") {
      EXPECT_EQ(loaded.config.preprocess.mean, (std::vector<double>{0.25, 0.5, 0.75}));  // preprocessor_config.json
      EXPECT_EQ(loaded.config.preprocess.std, (std::vector<double>{0.2, 0.3, 0.4}));
      EXPECT_FALSE(loaded.config.quick_gelu);  // hidden_act "gelu"
      EXPECT_EQ(loaded.config.vision.heads(), 3);
    }
    if (name.find("_jit") != std::string::npos || name.find("_state") != std::string::npos) {
      EXPECT_TRUE(loaded.config.quick_gelu);  // inferred from shapes, OpenAI's rule
    }

    // OpenAI's fp16 files also run as an fp16 model (LayerNorm in fp32): close to the fp32 reference.
    if (name.find("_jit") != std::string::npos) {
      options.dtype = at::kHalf;
      auto half = load_clip(dir / c["weights"].get<std::string>(), options).model;
      at::NoGradGuard no_grad;
      auto half_image = half->encode_image(expected.at("image"));
      auto half_text = half->encode_text(tokens);
      EXPECT_EQ(half_image.scalar_type(), at::kHalf);
      std::cout << "  fp16 model: image_emb max abs diff " << test::max_abs_diff(half_image, expected.at("image_emb"))
                << ", text_emb " << test::max_abs_diff(half_text, expected.at("text_emb")) << "\n";
      EXPECT_TENSOR_CLOSE(half_image, expected.at("image_emb"), 2e-2, 2e-2);
      EXPECT_TENSOR_CLOSE(half_text, expected.at("text_emb"), 2e-2, 2e-2);
    }
  }
}

}  // namespace
}  // namespace clipguide::clipnet
