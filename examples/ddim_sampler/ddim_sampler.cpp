// A DDIM sampler of your own, steered by CLIP with clipguide's sampler guidance, as a program outside the
// project would write it:
//   ddim_sampler MODEL VOCAB OUT.png [STEPS=20] [PROMPT="a red circle"] [SCALE=1000] [SEED=0]
// The diffusion model is a small convolutional eps-predictor with random weights (a stand-in for a trained
// one: the sampler only needs eps(x_t, t)). Each step: eps and the x0 it implies, clipguide's gradient of
// the guidance loss through x0 (SamplerGuidance::gradient), eps corrected by it (guided-diffusion's
// condition_score: eps - sqrt(1 - alphā) · cond, cond = -gradient), then the deterministic DDIM update
// (eta 0). Prints one line per step, then "final clip loss L" (the prompt loss of the result, averaged over
// 4 cutout draws), and writes OUT.png.
// Shapes: B images (1), H x W pixels (64 x 64), T = 1000 training timesteps.
#include <core/error.h>
#include <core/image_io.h>
#include <guidance/guide.h>
#include <guidance/sampler_guidance.h>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {

namespace gd = clipguide::guidance;

constexpr int64_t kTrainSteps = 1000;

// eps(x_t, t): three 3x3 convolutions with the timestep as sinusoidal channel offsets. Random weights.
struct EpsModel : torch::nn::Module {
  torch::nn::Conv2d a{nullptr}, b{nullptr}, c{nullptr};
  EpsModel() {
    torch::manual_seed(11);
    a = register_module("a", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 32, 3).padding(1)));
    b = register_module("b", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 32, 3).padding(1)));
    c = register_module("c", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 3, 3).padding(1)));
    for (auto& p : parameters()) p.set_requires_grad(false);
  }
  at::Tensor forward(const at::Tensor& x, int64_t t) {
    const at::Tensor freqs = at::exp(at::arange(16, at::kFloat) * (-std::log(10000.0) / 16));  // (16,)
    const at::Tensor phase = freqs * static_cast<double>(t);
    const at::Tensor embedding = at::cat({at::sin(phase), at::cos(phase)}).view({1, 32, 1, 1});
    return c->forward(at::silu(b->forward(at::silu(a->forward(x) + embedding))));
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: ddim_sampler MODEL VOCAB OUT.png [STEPS=20] [PROMPT] [SCALE=1000] [SEED=0]\n";
    return 2;
  }
  try {
    const int64_t steps = argc > 4 ? std::stoll(argv[4]) : 20;
    const std::string prompt = argc > 5 ? argv[5] : "a red circle";
    const double scale = argc > 6 ? std::stod(argv[6]) : 1000.0;
    const uint64_t seed = argc > 7 ? std::stoull(argv[7]) : 0;
    if (steps < 1 || steps > kTrainSteps) throw clipguide::Error("STEPS must be in [1, 1000]");

    // The guidance: one CLIP model, one text prompt, Disco-style cut schedules.
    auto guide = std::make_shared<gd::Guide>(std::vector<gd::GuideMember>{gd::load_member(argv[1], argv[2])});
    guide->set_prompts(gd::text_prompts(prompt));
    gd::SamplerGuidanceOptions options;
    options.clip_guidance_scale = scale;
    options.cut_overview = gd::StepSchedule::parse("[4]*400+[2]*600", "cut_overview");
    options.cut_innercut = gd::StepSchedule::parse("[2]*400+[4]*600", "cut_innercut");
    options.cutn_batches = 2;
    options.range_scale = 50;
    options.clamp_max = 0.1;
    options.guide.seed = seed;
    gd::SamplerGuidance guidance(guide, options);

    // The diffusion: linear betas over 1000 timesteps, DDIM on `steps` of them, from pure noise.
    EpsModel model;
    const at::Tensor betas = at::linspace(1e-4, 0.02, kTrainSteps, at::kDouble);
    const at::Tensor alpha_bar = at::cumprod(1 - betas, 0);
    torch::manual_seed(seed);
    at::Tensor x = at::randn({1, 3, 64, 64});
    for (int64_t i = 0; i < steps; ++i) {
      const int64_t t = (kTrainSteps - 1) * (steps - 1 - i) / std::max<int64_t>(steps - 1, 1);
      const int64_t t_prev = i + 1 < steps ? (kTrainSteps - 1) * (steps - 2 - i) / std::max<int64_t>(steps - 1, 1) : -1;
      const double ab = alpha_bar[t].item<double>(), ab_prev = t_prev >= 0 ? alpha_bar[t_prev].item<double>() : 1.0;
      const at::Tensor x_t = x.detach().requires_grad_(true);
      at::Tensor eps = model.forward(x_t, t);
      const at::Tensor x0 = (x_t - std::sqrt(1 - ab) * eps) / std::sqrt(ab);
      const auto g = guidance.gradient(x_t, x0, static_cast<double>(t + 1) / kTrainSteps, i, std::sqrt(1 - ab));
      eps = eps.detach() + std::sqrt(1 - ab) * g.grad;
      const at::Tensor x0_guided = (x_t.detach() - std::sqrt(1 - ab) * eps) / std::sqrt(ab);
      x = std::sqrt(ab_prev) * x0_guided + std::sqrt(1 - ab_prev) * eps;
      std::printf("step %lld t %lld: clip loss %.4f, guidance rms %.2e\n", static_cast<long long>(i),
                  static_cast<long long>(t), g.report.clip.prompt_loss, g.report.raw_rms);
    }
    const at::Tensor image = x.clamp(-1, 1).add(1).div(2);  // (1, 3, H, W) in [0, 1]
    double final_loss = 0;
    {
      at::NoGradGuard no_grad;
      for (int64_t k = 0; k < 4; ++k) final_loss += (*guide).loss(image, 10000 + k).item<double>() / 4;
    }
    std::printf("final clip loss %.5f\n", final_loss);
    clipguide::write_image(argv[3], image[0]);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ddim_sampler: error: " << clipguide::error_text(e) << "\n";
    return 1;
  }
}
