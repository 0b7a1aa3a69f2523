// The "torchscript" generator: any TorchScript module (torch.jit.script or torch.jit.trace, saved from Python)
// that maps a latent to an image, so models exported from Python (StyleGAN, a diffusion decoder, ...) plug in.
// Unlike clipguide's weight readers this one runs the archive's TorchScript graph: the user chose that model.
//
// The module's own parameters are frozen; only the latent is optimised. Its forward(latent) must return one
// tensor (B, 3, H, W) with H x W the generator's height x width, in [0, 1] or [-1, 1] (extra["output_range"]).
// Shapes: B batch, H x W image, L... the latent's shape after the batch dimension.
#pragma once

#include "generators/generator.h"
#include "generators/latent_tensors.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace torch::jit {
struct Module;
}  // namespace torch::jit

namespace clipguide::generators {

// Settings read from GeneratorOptions::extra (keys in quotes); a value that does not parse is a clipguide::Error.
struct TorchScriptOptions {
  // "latent_shape" ("1,512", "1,18,512"): the latent the module takes; the first dimension is the batch and is
  // replaced by GeneratorOptions::batch. Empty: the module's attribute latent_shape (a list of ints), if any.
  std::vector<int64_t> latent_shape;
  bool output_minus_one_to_one = false;  // "output_range": "0,1" (default) or "-1,1" (mapped to [0, 1])
  // "latent_clamp": "lo,hi", or "c" for [-c, c]; post_step() clamps the latent to it. Unset: no clamp.
  std::optional<std::pair<double, double>> latent_clamp;
  int64_t init_steps = 300;  // "init_steps": Adam steps of init_from_image
  double init_lr = 0.05;     // "init_lr": Adam learning rate of init_from_image

  static TorchScriptOptions from_extra(const std::map<std::string, std::string>& extra);
};

class TorchScriptGenerator : public Generator {
 public:
  // Loads options.weights (a TorchScript archive) onto options.device, freezes its parameters, builds the latent
  // with init_random(options.seed) and runs the module once to check its output. Throws clipguide::Error naming
  // the file for a missing or unreadable archive, an unknown latent shape, a forward that fails, or an output
  // that is not a (batch, 3, height, width) tensor (got [..], expected [..]).
  explicit TorchScriptGenerator(const GeneratorOptions& options);
  ~TorchScriptGenerator() override;

  std::string name() const override { return "torchscript"; }
  std::vector<at::Tensor> parameters() override { return latents_.all(); }
  at::Tensor render() override;  // (B, 3, H, W) in [0, 1] (clamp_with_grad)
  // No encoder: optimises a copy of the current latent for init_steps Adam steps (lr init_lr) on the mean
  // squared error between render() and the image (resized to H x W), clamping after each step like
  // post_step(), then copies it into the latent. The module's weights do not change.
  void init_from_image(const at::Tensor& image) override;
  void init_random(uint64_t seed) override;  // standard normal latent
  std::vector<int64_t> latent_shape() const override { return latent().sizes().vec(); }
  void post_step() override;  // clamps the latent to latent_clamp, when set
  TensorMap state() const override { return latents_.state(); }  // {"latent": (B, L...)}
  void load_state(const TensorMap& state) override { latents_.load(state); }

  const TorchScriptOptions& script_options() const { return script_options_; }
  const torch::jit::Module& module() const { return *module_; }
  const at::Tensor& latent() const { return latents_.at("latent"); }  // (B, L...), requires_grad

 private:
  at::Tensor render_latent(const at::Tensor& latent);  // (B, L...) -> (B, 3, H, W) in [0, 1]
  std::string context() const;                        // "torchscript generator 'file'"

  TorchScriptOptions script_options_;
  std::filesystem::path file_;
  int64_t batch_, height_, width_;  // B, H, W
  c10::Device device_;
  std::unique_ptr<torch::jit::Module> module_;
  LatentTensors latents_;  // "latent": (B, L...)
};

}  // namespace clipguide::generators
