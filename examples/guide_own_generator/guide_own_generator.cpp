// Guiding a generator of your own with clipguide, as a program outside the project would write it:
//   guide_own_generator MODEL VOCAB OUT.png [STEPS=20] [PROMPT="a red circle"]
// The generator here is a handful of soft coloured blobs on a background (positions, sizes and colours are
// the parameters), implementing clipguide's Generator interface without registering it. Prints the loss of
// every step, then "loss first3 <mean of the first 3 steps> last3 <mean of the last 3>", and writes OUT.png.
// Shapes: K blobs, H x W pixels.
#include <core/error.h>
#include <core/image_io.h>
#include <generators/generator.h>
#include <guidance/guide.h>
#include <guidance/guide_loop.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/log.h>
#include <ATen/ops/meshgrid.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tanh.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {

namespace gen = clipguide::generators;

class BlobGenerator : public gen::Generator {
 public:
  BlobGenerator(int64_t width, int64_t height, int64_t blobs, uint64_t seed)
      : width_(width), height_(height), blobs_(blobs) {
    auto ys = at::arange(height_, at::kFloat).add(0.5).div(height_).mul(2).sub(1);  // (H,) in [-1, 1]
    auto xs = at::arange(width_, at::kFloat).add(0.5).div(width_).mul(2).sub(1);    // (W,)
    auto grid = at::meshgrid({ys, xs}, "ij");
    grid_ = at::stack({grid[1], grid[0]}, 0);  // (2, H, W): x, y
    init_random(seed);
  }

  std::string name() const override { return "blobs"; }
  std::vector<at::Tensor> parameters() override { return {centers_, log_radii_, colors_, background_}; }

  at::Tensor render() override {
    auto pos = at::tanh(centers_);                                                       // (K, 2) in (-1, 1)
    auto d2 = (grid_.unsqueeze(0) - pos.view({blobs_, 2, 1, 1})).pow(2).sum(1);          // (K, H, W)
    auto weights = at::exp(-d2 / at::exp(2 * log_radii_).view({blobs_, 1, 1}));          // (K, H, W)
    auto logits = colors_.t().matmul(weights.view({blobs_, -1})).view({3, height_, width_}) +
                  background_.view({3, 1, 1});                                           // (3, H, W)
    return at::sigmoid(logits).unsqueeze(0);                                             // (1, 3, H, W) in (0, 1)
  }

  void init_from_image(const at::Tensor& image) override {
    // A crude fit: the background takes the image's mean colour, the blobs start empty.
    at::NoGradGuard no_grad;
    auto mean = image.to(at::kFloat).mean({0, 2, 3}).clamp(1e-3, 1 - 1e-3);  // (3,)
    background_.copy_(at::log(mean / (1 - mean)));
    colors_.zero_();
  }

  void init_random(uint64_t seed) override {
    auto g = at::detail::createCPUGenerator(seed);
    auto opts = at::TensorOptions().dtype(at::kFloat);
    set("centers", at::randn({blobs_, 2}, g, opts) * 0.7, centers_);
    set("log_radii", at::randn({blobs_}, g, opts) * 0.2 - 1.2, log_radii_);
    set("colors", at::randn({blobs_, 3}, g, opts), colors_);
    set("background", at::randn({3}, g, opts) * 0.3, background_);
  }

  std::vector<int64_t> latent_shape() const override { return {blobs_, 2}; }

  gen::TensorMap state() const override {
    return {{"centers", centers_.detach().clone()},
            {"log_radii", log_radii_.detach().clone()},
            {"colors", colors_.detach().clone()},
            {"background", background_.detach().clone()}};
  }

  void load_state(const gen::TensorMap& state) override {
    for (auto& [name, target] : std::vector<std::pair<std::string, at::Tensor*>>{
             {"centers", &centers_}, {"log_radii", &log_radii_}, {"colors", &colors_}, {"background", &background_}}) {
      auto it = state.find(name);
      if (it == state.end()) throw clipguide::Error("blobs generator state: no '" + name + "' tensor");
      set(name, it->second, *target);
    }
  }

 private:
  // In place once created, so an optimiser holding parameters() keeps working.
  static void set(const std::string& name, const at::Tensor& value, at::Tensor& param) {
    if (!param.defined()) {
      param = value.detach().clone().set_requires_grad(true);
      return;
    }
    if (!value.sizes().equals(param.sizes())) {
      throw clipguide::Error("blobs generator state: '" + name + "': got " + clipguide::shape_str(value.sizes()) +
                             ", expected " + clipguide::shape_str(param.sizes()));
    }
    at::NoGradGuard no_grad;
    param.copy_(value);
  }

  int64_t width_, height_, blobs_;  // W, H, K
  at::Tensor grid_;                 // (2, H, W) pixel centres in [-1, 1]
  at::Tensor centers_;              // (K, 2) pre-tanh positions
  at::Tensor log_radii_;            // (K,)
  at::Tensor colors_;               // (K, 3) logit contributions
  at::Tensor background_;           // (3,) logits
};

}  // namespace

int main(int argc, char** argv) {
  namespace guidance = clipguide::guidance;
  if (argc < 4) {
    std::cerr << "usage: " << argv[0] << " MODEL VOCAB OUT.png [STEPS=20] [PROMPT=\"a red circle\"]\n";
    return 2;
  }
  try {
    const int64_t steps = argc > 4 ? std::stoll(argv[4]) : 20;
    const std::string prompt = argc > 5 ? argv[5] : "a red circle";

    guidance::GuideOptions options;
    options.cutouts.cutn = 8;
    options.augments = guidance::parse_augments("flip");
    auto guide = std::make_shared<guidance::Guide>(
        std::vector<guidance::GuideMember>{guidance::load_member(argv[1], argv[2])}, options);
    guide->set_prompts(guidance::text_prompts(prompt));

    auto generator = std::make_shared<BlobGenerator>(/*width=*/48, /*height=*/48, /*blobs=*/6, /*seed=*/1);
    guidance::GuideLoop loop(generator, guide, guidance::LoopSettings{"adam", 0.05});

    std::vector<double> losses;
    loop.run(steps, [&](const guidance::LoopProgress& p) {
      losses.push_back(p.report.total);
      std::printf("step %lld loss %.6f similarity %.4f (%.1f it/s)\n", static_cast<long long>(p.step),
                  p.report.total, p.report.prompts.empty() ? 0.0 : p.report.prompts[0].similarity, p.its_per_second);
    });
    if (losses.size() >= 3) {
      const size_t n = losses.size();
      std::printf("loss first3 %.6f last3 %.6f\n", (losses[0] + losses[1] + losses[2]) / 3,
                  (losses[n - 3] + losses[n - 2] + losses[n - 1]) / 3);
    }
    at::NoGradGuard no_grad;
    clipguide::write_image(argv[3], generator->render()[0], {{"prompt", prompt}});
    std::printf("wrote %s\n", argv[3]);
  } catch (const std::exception& e) {
    std::cerr << "guide_own_generator: " << clipguide::error_text(e) << "\n";
    return 1;
  }
  return 0;
}
