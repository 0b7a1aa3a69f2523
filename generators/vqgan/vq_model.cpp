// VQModel / GumbelVQ and their checkpoint loading (see vq_model.h).
// ref: taming-transformers-rom1504 0.0.6 taming/models/vqgan.py (VQModel, GumbelVQ)
// Shapes: B batch, H x W image, h x w latent grid, E embed_dim, N n_embed.
#include "generators/vqgan/vq_model.h"

#include "core/error.h"
#include "core/io/weights.h"
#include "core/skip_init.h"
#include "core/state_dict.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace clipguide::generators::vqgan {

VQModelImpl::VQModelImpl(VqganConfig config) : config_(std::move(config)) {
  config_.validate();
  encoder = register_module("encoder", Encoder(config_));
  decoder = register_module("decoder", Decoder(config_));
  if (config_.quantizer == QuantizerKind::kGumbel) {
    quantize = register_module("quantize", std::make_shared<GumbelQuantizeImpl>(config_.z_channels, config_.embed_dim,
                                                                                config_.n_embed));
  } else {
    quantize = register_module("quantize", std::make_shared<VectorQuantizerImpl>(config_.n_embed, config_.embed_dim));
  }
  quant_conv = register_module(
      "quant_conv", clipguide::conv2d(torch::nn::Conv2dOptions(config_.z_channels, config_.embed_dim, 1)));
  post_quant_conv = register_module(
      "post_quant_conv", clipguide::conv2d(torch::nn::Conv2dOptions(config_.embed_dim, config_.z_channels, 1)));
}

at::Tensor VQModelImpl::encode_prequant(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels, "VQModel::encode: expected (B, ", config_.in_channels,
              ", H, W), got ", x.sizes());
  return quant_conv(encoder(x));  // (B, E, h, w)
}

Quantized VQModelImpl::encode(const at::Tensor& x) { return quantize->forward(encode_prequant(x)); }

at::Tensor VQModelImpl::decode(const at::Tensor& z_q) {
  TORCH_CHECK(z_q.dim() == 4 && z_q.size(1) == config_.embed_dim, "VQModel::decode: expected (B, ", config_.embed_dim,
              ", h, w), got ", z_q.sizes());
  return decoder(post_quant_conv(z_q));  // (B, out_ch, H, W)
}

// ---------------------------------------------------------------------------------------------------------
// Loading

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// "a, b, c and 5 more"
std::string join_some(const std::vector<std::string>& items, size_t max_shown = 8) {
  std::ostringstream out;
  for (size_t i = 0; i < items.size() && i < max_shown; ++i) out << (i ? ", " : "") << items[i];
  if (items.size() > max_shown) out << " and " << items.size() - max_shown << " more";
  return out.str();
}

}  // namespace

clipguide::TensorMap read_vqgan_weights(const std::filesystem::path& path) {
  auto file = clipguide::read_weights(path);
  const std::string kFirstStage = "first_stage_model.";
  const bool first_stage = file.tensors.count("encoder.conv_in.weight") == 0 &&
                           file.tensors.count(kFirstStage + "encoder.conv_in.weight") != 0;
  clipguide::TensorMap out;
  for (auto& [key, tensor] : file.tensors) {
    std::string name = key;
    if (first_stage) {
      if (!starts_with(name, kFirstStage)) continue;  // the transformer and conditioning stage
      name = name.substr(kFirstStage.size());
    }
    if (starts_with(name, "loss.")) continue;  // LPIPS and discriminator: training only
    out.emplace(std::move(name), tensor);
  }
  return out;
}

void load_vq_weights(VQModelImpl& model, const clipguide::TensorMap& state_dict, const std::string& source,
                     bool adopt) {
  // The one state-dict path (core/state_dict.h: shapes, finiteness, copies), with the VQGAN's wording for what
  // does not match.
  auto refuse_mismatch = [&](const clipguide::LoadReport& report) {
    if (!report.missing_keys.empty()) {
      std::map<std::string, at::Tensor> expected;
      for (const auto& item : model.named_parameters(/*recurse=*/true)) expected[item.key()] = item.value();
      for (const auto& item : model.named_buffers(/*recurse=*/true)) expected[item.key()] = item.value();
      std::vector<std::string> missing;
      for (const auto& key : report.missing_keys) {
        missing.push_back("'" + key + "' (expected " + shape_str(expected.at(key).sizes()) + ")");
      }
      throw Error("missing " + std::to_string(missing.size()) + " key(s): " + join_some(missing));
    }
    std::vector<std::string> unexpected;
    for (const auto* keys : {&report.unexpected_keys, &report.ignored_keys}) {
      for (const auto& key : *keys) unexpected.push_back("'" + key + "'");
    }
    if (!unexpected.empty()) {
      throw Error(std::to_string(unexpected.size()) +
                  " unexpected key(s) (a different architecture or config?): " + join_some(unexpected));
    }
  };
  try {
    clipguide::load_state_dict(model, state_dict, /*strict=*/true, refuse_mismatch, adopt);
  } catch (const Error& e) {
    throw Error("VQGAN weights " + source + ": " + e.what());
  }
}

VQModel load_vq_model(const std::filesystem::path& weights, const VqganLoadOptions& options) {
  auto state_dict = read_vqgan_weights(weights);
  VqganConfig config = options.config.empty() ? infer_vqgan_config(state_dict) : read_vqgan_yaml(options.config);
  VQModel model{nullptr};
  {
    SkipInit skip;  // loaded strictly next: every value comes from the file
    model = VQModel(config);
  }
  load_vq_weights(*model, state_dict, weights.string(), /*adopt=*/true);  // read just now
  model->to(options.device);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  return model;
}

}  // namespace clipguide::generators::vqgan
