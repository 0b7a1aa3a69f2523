// CLIP members on another device than the image (--clip_model path@cuda:0) and one GPU per torchrun
// process: the loss and the image's gradient are those of everything on the CPU. Needs CUDA (label cuda:
// skipped without a GPU). Shapes: H x W image.
#include "app/session.h"
#include "guidance/random_clip.h"
#include "test_util.h"

#include <ATen/Context.h>
#include <ATen/ops/rand.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cstdlib>

namespace app = clipguide::app;
namespace gd = clipguide::guidance;

namespace {

struct Scored {
  double loss;
  at::Tensor grad;  // d loss / d image, on the image's device (the CPU)
};

Scored score(gd::GuideMember member, const at::Tensor& image) {
  gd::GuideOptions options;
  options.cutouts.cutn = 8;
  options.augments = gd::parse_augments("flip,affine");
  options.seed = 3;
  gd::Guide guide({std::move(member)}, options);
  guide.set_prompts({gd::GuidePrompt::from_noise(1), gd::GuidePrompt::from_noise(2, -0.5)});
  at::Tensor x = image.clone().requires_grad_(true);
  at::Tensor loss = guide.loss(x, 0);
  EXPECT_TRUE(loss.device().is_cpu()) << "the loss comes back to the image's device";
  loss.backward();
  return {loss.item<double>(), x.grad()};
}

TEST(MemberDevices, AMemberOnCudaScoresACpuImageAsOnTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  const at::Tensor image = at::rand({1, 3, 64, 48});
  const Scored cpu = score(gd::test::random_tiny_vit(0), image);
  gd::GuideMember on_gpu = gd::test::random_tiny_vit(0);
  on_gpu.model->to(c10::Device(c10::kCUDA, 0));
  const Scored gpu = score(on_gpu, image);
  EXPECT_NEAR(gpu.loss, cpu.loss, 1e-4 * std::abs(cpu.loss) + 1e-6);
  EXPECT_TRUE(gpu.grad.device().is_cpu());
  EXPECT_TENSOR_CLOSE(gpu.grad, cpu.grad, 1e-4, 1e-6);
}

TEST(MemberDevices, EachTorchrunProcessTakesItsGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  setenv("WORLD_SIZE", "2", 1);
  setenv("LOCAL_RANK", "1", 1);
  app::RunSettings s;
  s.device = "cuda";
  EXPECT_EQ(app::run_device(s), c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(1 % torch::cuda::device_count())));
  s.device = "cuda:0";  // named: kept
  EXPECT_EQ(app::run_device(s), c10::Device(c10::kCUDA, 0));
  unsetenv("WORLD_SIZE");
  unsetenv("LOCAL_RANK");
  s.device = "cuda";
  EXPECT_EQ(app::run_device(s), c10::Device(c10::kCUDA, 0));
}

}  // namespace
