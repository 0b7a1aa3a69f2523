// Loading guided-diffusion weights (see model_file.h).
#include "generators/diffusion/model_file.h"

#include "core/error.h"
#include "core/io/weights.h"
#include "core/skip_init.h"
#include "core/state_dict.h"

namespace clipguide::generators::diffusion {

DiffusionModel load_diffusion_model(const std::filesystem::path& weights, const std::filesystem::path& config_json,
                                    c10::Device device, ModelAndDiffusionConfig base) {
  auto file = clipguide::read_weights(weights);
  DiffusionModel model;
  try {
    if (config_json.empty()) {
      model.config = base;
      model.config.unet = infer_unet_config(file.tensors, base.unet);
      // The weights say whether the variance is learned; without it, guided_diffusion's default is fixed large.
      auto& variance = model.config.diffusion.variance_type;
      if (model.config.unet.learn_sigma()) variance = VarianceType::kLearnedRange;
      else if (variance == VarianceType::kLearnedRange) variance = VarianceType::kFixedLarge;
    } else {
      model.config = read_model_config(config_json, base);
    }
    {
      SkipInit skip;  // loaded strictly next: every value comes from the file
      model.unet = UNetModel(model.config.unet);
    }
    clipguide::load_state_dict(*model.unet, file.tensors, /*strict=*/true, {}, /*adopt=*/true);
  } catch (const Error& e) {
    throw Error("diffusion model weights " + weights.string() +
                (config_json.empty() ? "" : " (with " + config_json.string() + ")") + ": " + e.what());
  }
  model.unet->to(device);
  model.unet->eval();
  for (auto& p : model.unet->parameters()) p.set_requires_grad(false);
  return model;
}

ModelFn model_fn(UNetModel unet, const GaussianDiffusion& diffusion, at::Tensor labels) {
  return [unet, &diffusion, labels](const at::Tensor& x, int64_t i) mutable {
    return unet->forward(x, diffusion.model_timesteps(i, x.size(0), x.device()), labels);
  };
}

}  // namespace clipguide::generators::diffusion
