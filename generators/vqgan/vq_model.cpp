// VQModel / GumbelVQ and their checkpoint loading (see vq_model.h).
// ref: taming-transformers-rom1504 0.0.6 taming/models/vqgan.py (VQModel, GumbelVQ)
// Shapes: B batch, H x W image, h x w latent grid, E embed_dim, N n_embed.
#include "generators/vqgan/vq_model.h"

#include "clipnet/checkpoint.h"
#include "clipnet/error.h"
#include "clipnet/io/weights.h"

#include <torch/csrc/autograd/grad_mode.h>

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
      "quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(config_.z_channels, config_.embed_dim, 1)));
  post_quant_conv = register_module(
      "post_quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(config_.embed_dim, config_.z_channels, 1)));
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

clipnet::TensorMap read_vqgan_weights(const std::filesystem::path& path) {
  auto file = clipnet::read_weights(path);
  const std::string kFirstStage = "first_stage_model.";
  const bool first_stage = file.tensors.count("encoder.conv_in.weight") == 0 &&
                           file.tensors.count(kFirstStage + "encoder.conv_in.weight") != 0;
  clipnet::TensorMap out;
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

void load_vq_weights(VQModelImpl& model, const clipnet::TensorMap& state_dict, const std::string& source) {
  auto params = model.named_parameters(/*recurse=*/true);
  auto buffers = model.named_buffers(/*recurse=*/true);
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const auto& item : params) targets.emplace_back(item.key(), item.value());
  for (const auto& item : buffers) targets.emplace_back(item.key(), item.value());

  std::vector<std::string> missing;
  std::set<std::string> known;
  for (const auto& [key, target] : targets) {
    known.insert(key);
    auto it = state_dict.find(key);
    if (it == state_dict.end()) {
      missing.push_back("'" + key + "' (expected " + shape_str(target.sizes()) + ")");
    } else if (!it->second.sizes().equals(target.sizes())) {
      throw Error("VQGAN weights " + source + ": key '" + key + "': got " + shape_str(it->second.sizes()) +
                  ", expected " + shape_str(target.sizes()));
    }
  }
  if (!missing.empty()) {
    throw Error("VQGAN weights " + source + ": missing " + std::to_string(missing.size()) +
                " key(s): " + join_some(missing));
  }
  std::vector<std::string> unexpected;
  for (const auto& item : state_dict) {
    if (!known.count(item.first)) unexpected.push_back("'" + item.first + "'");
  }
  if (!unexpected.empty()) {
    throw Error("VQGAN weights " + source + ": " + std::to_string(unexpected.size()) +
                " unexpected key(s) (a different architecture or config?): " + join_some(unexpected));
  }
  clipnet::check_finite(state_dict, "VQGAN weights " + source);
  at::NoGradGuard no_grad;
  for (auto& [key, target] : targets) target.copy_(state_dict.at(key));
}

VQModel load_vq_model(const std::filesystem::path& weights, const VqganLoadOptions& options) {
  auto state_dict = read_vqgan_weights(weights);
  VqganConfig config = options.config.empty() ? infer_vqgan_config(state_dict) : read_vqgan_yaml(options.config);
  VQModel model(config);
  load_vq_weights(*model, state_dict, weights.string());
  model->to(options.device);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  return model;
}

}  // namespace clipguide::generators::vqgan
