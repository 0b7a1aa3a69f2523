// The "torchscript" generator (see torchscript.h): a frozen TorchScript module driven by a trainable latent.
// This is the one generator that includes <torch/script.h>: it runs the archive's graph by design.
// Shapes: B batch, H x W image, L... the latent's shape after the batch dimension.
#include "generators/torchscript.h"

#include "core/error.h"
#include "core/grad_ops.h"
#include "core/io/weights.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/randn.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>
#include <torch/script.h>

#include <chrono>
#include <cmath>
#include <sstream>

namespace clipguide::generators {

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

// "1, 2.5" -> {1, 2.5}; throws naming the key when an element is not a finite number.
std::vector<double> parse_numbers(const std::string& key, const std::string& text) {
  std::vector<double> out;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    item = trim(item);
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || !std::isfinite(value)) {
      throw Error("torchscript generator: extra[\"" + key + "\"] = '" + text + "': '" + item + "' is not a number");
    }
    out.push_back(value);
  }
  if (out.empty()) throw Error("torchscript generator: extra[\"" + key + "\"] is empty");
  return out;
}

std::vector<int64_t> parse_shape(const std::string& key, const std::string& text) {
  std::vector<int64_t> shape;
  for (double v : parse_numbers(key, text)) {
    if (v < 1 || v != std::floor(v)) {
      throw Error("torchscript generator: extra[\"" + key + "\"] = '" + text + "': sizes must be integers >= 1");
    }
    shape.push_back(static_cast<int64_t>(v));
  }
  return shape;
}

}  // namespace

TorchScriptOptions TorchScriptOptions::from_extra(const std::map<std::string, std::string>& extra) {
  TorchScriptOptions options;
  if (auto it = extra.find("latent_shape"); it != extra.end()) options.latent_shape = parse_shape(it->first, it->second);
  if (auto it = extra.find("output_range"); it != extra.end()) {
    const auto range = parse_numbers(it->first, it->second);
    if (range == std::vector<double>{0, 1}) {
      options.output_minus_one_to_one = false;
    } else if (range == std::vector<double>{-1, 1}) {
      options.output_minus_one_to_one = true;
    } else {
      throw Error("torchscript generator: extra[\"output_range\"] = '" + it->second + "': expected \"0,1\" or \"-1,1\"");
    }
  }
  if (auto it = extra.find("latent_clamp"); it != extra.end()) {
    const auto bounds = parse_numbers(it->first, it->second);
    if (bounds.size() == 1 && bounds[0] > 0) {
      options.latent_clamp = std::make_pair(-bounds[0], bounds[0]);
    } else if (bounds.size() == 2 && bounds[0] < bounds[1]) {
      options.latent_clamp = std::make_pair(bounds[0], bounds[1]);
    } else {
      throw Error("torchscript generator: extra[\"latent_clamp\"] = '" + it->second +
                  "': expected \"lo,hi\" with lo < hi, or one positive number c for [-c, c]");
    }
  }
  if (auto it = extra.find("init_steps"); it != extra.end()) {
    options.init_steps = parse_shape(it->first, it->second).at(0);
  }
  if (auto it = extra.find("init_lr"); it != extra.end()) {
    const auto lr = parse_numbers(it->first, it->second);
    if (lr.size() != 1 || lr[0] <= 0) {
      throw Error("torchscript generator: extra[\"init_lr\"] = '" + it->second + "': expected one positive number");
    }
    options.init_lr = lr[0];
  }
  return options;
}

TorchScriptGenerator::TorchScriptGenerator(const GeneratorOptions& options)
    : script_options_(TorchScriptOptions::from_extra(options.extra)),
      file_(options.weights),
      batch_(options.batch),
      height_(options.height),
      width_(options.width),
      device_(options.device),
      latents_("torchscript generator '" + options.weights.string() + "'", options.device) {
  check_image_size(options, "torchscript");
  if (file_.empty()) {
    throw Error("torchscript generator: no weights given (options.weights: a TorchScript archive saved with "
                "torch.jit.save or ScriptModule.save)");
  }
  std::error_code ec;
  if (!std::filesystem::exists(file_, ec)) throw Error(context() + ": no such file");
  if (!std::filesystem::is_regular_file(file_, ec)) throw Error(context() + ": not a regular file");
  try {
    const auto start = std::chrono::steady_clock::now();
    module_ = std::make_unique<torch::jit::Module>(torch::jit::load(file_.string(), device_));
    clipguide::log_weight_read(file_, "TorchScript module",
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  } catch (const std::exception& e) {
    throw Error(context() + ": cannot load it as a TorchScript archive: " + error_text(e));
  }
  module_->eval();
  for (auto p : module_->parameters()) p.set_requires_grad(false);  // only the latent is optimised

  if (script_options_.latent_shape.empty() && module_->hasattr("latent_shape")) {
    const auto value = module_->attr("latent_shape");
    std::vector<int64_t> shape;
    bool ok = value.isList() || value.isTuple();
    if (ok) {
      const auto elements = value.isList() ? value.toListRef().vec() : value.toTupleRef().elements().vec();
      for (const auto& element : elements) {
        ok = ok && element.isInt() && element.toInt() >= 1;
        if (ok) shape.push_back(element.toInt());
      }
    }
    if (!ok || shape.empty()) {
      throw Error(context() + ": attribute latent_shape must be a list of ints >= 1; got " + value.tagKind() +
                  " (set extra[\"latent_shape\"] to override)");
    }
    script_options_.latent_shape = shape;
  }
  if (script_options_.latent_shape.empty()) {
    throw Error(context() + ": unknown latent shape: set extra[\"latent_shape\"] (e.g. \"1,512\") or give the "
                            "module an attribute latent_shape (a list of ints, batch first)");
  }
  init_random(options.seed);
  at::NoGradGuard no_grad;
  render_latent(latent());  // fail here, not in the first guidance step, when the output is not an image
}

TorchScriptGenerator::~TorchScriptGenerator() = default;

std::string TorchScriptGenerator::context() const { return "torchscript generator '" + file_.string() + "'"; }

at::Tensor TorchScriptGenerator::render_latent(const at::Tensor& latent) {
  c10::IValue output;
  try {
    output = module_->forward({latent});
  } catch (const std::exception& e) {
    throw Error(context() + ": forward failed on a latent " + shape_str(latent.sizes()) + ": " + error_text(e));
  }
  if (!output.isTensor()) {
    throw Error(context() + ": forward returned " + output.tagKind() + ", expected a tensor (B, 3, H, W)");
  }
  auto image = output.toTensor();  // (B, 3, H, W)
  const std::vector<int64_t> expected = {batch_, 3, height_, width_};
  if (!image.sizes().equals(expected)) {
    throw Error(context() + ": output shape got " + shape_str(image.sizes()) + ", expected " + shape_str(expected) +
                " (batch, RGB, height, width: set width and height to the model's output size)");
  }
  image = image.to(at::kFloat);
  if (script_options_.output_minus_one_to_one) image = image.add(1).div(2);
  return clamp_with_grad(image, 0.0, 1.0);  // (B, 3, H, W) in [0, 1]
}

at::Tensor TorchScriptGenerator::render() { return render_latent(latent()); }

void TorchScriptGenerator::init_from_image(const at::Tensor& image) {
  const at::Tensor target =  // (B, 3, H, W) in [0, 1]
      init_image_to_size(image, batch_, height_, width_, device_, "torchscript").expand({batch_, -1, -1, -1});
  at::AutoGradMode enable_grad(true);
  auto latent = this->latent().detach().clone().set_requires_grad(true);  // (B, L...)
  torch::optim::Adam adam({latent}, torch::optim::AdamOptions(script_options_.init_lr));
  for (int64_t step = 0; step < script_options_.init_steps; ++step) {
    adam.zero_grad();
    at::mse_loss(render_latent(latent), target).backward();
    adam.step();
    if (script_options_.latent_clamp) {
      at::NoGradGuard no_grad;
      latent.clamp_(script_options_.latent_clamp->first, script_options_.latent_clamp->second);
    }
  }
  latents_.set("latent", latent);
}

void TorchScriptGenerator::init_random(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto shape = script_options_.latent_shape;
  shape[0] = batch_;
  latents_.set("latent", at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)));  // (B, L...)
}

void TorchScriptGenerator::post_step() {
  if (!script_options_.latent_clamp) return;
  at::NoGradGuard no_grad;
  latent().clamp_(script_options_.latent_clamp->first, script_options_.latent_clamp->second);
}

CLIPGUIDE_REGISTER_GENERATOR("torchscript", TorchScriptGenerator, "generator_weights", "", /*weights_required=*/true);

}  // namespace clipguide::generators
