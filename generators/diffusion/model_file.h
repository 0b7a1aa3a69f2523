// A guided-diffusion model from the files users have: the released .pt state dicts (plain torch.save, fp16 or
// fp32, read by the restricted reader: no pickle code runs), safetensors, or our own, with the architecture
// from a model_config JSON or inferred from the weights' shapes.
#pragma once

#include "generators/diffusion/config.h"
#include "generators/diffusion/gaussian_diffusion.h"
#include "generators/diffusion/sampler.h"
#include "generators/diffusion/unet.h"

#include <c10/core/Device.h>

#include <filesystem>

namespace clipguide::generators::diffusion {

struct DiffusionModel {
  ModelAndDiffusionConfig config;
  UNetModel unet{nullptr};  // eval mode, parameters frozen, float
};

// `config_json`: empty to infer the architecture from the weights over `base` (default: the 256x256
// unconditional settings), else a model_config JSON applied over `base`. Errors name the file and the key
// (missing, unexpected, shape got/expected, non-finite values).
DiffusionModel load_diffusion_model(const std::filesystem::path& weights, const std::filesystem::path& config_json = {},
                                    c10::Device device = c10::kCPU, ModelAndDiffusionConfig base = {});

// The sampler's view of `unet` under `diffusion`: step i -> unet(x, model timesteps, labels).
ModelFn model_fn(UNetModel unet, const GaussianDiffusion& diffusion, at::Tensor labels = {});

}  // namespace clipguide::generators::diffusion
