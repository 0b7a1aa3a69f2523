// Tests for guidance/graphed_encoder: on a CUDA device, the CLIP image features and their gradient w.r.t.
// the pixels replayed from CUDA graphs equal the eager ones (fp32 and bf16 autocast), over several replays
// and after a shape change; a Guide with cuda_graphs gives the eager loss. Skips (with a message) without a
// GPU; without CUDA in LibTorch the encoder says so.
// Shapes: N cutouts, S input size, E embedding width.
#include "guidance/graphed_encoder.h"

#include "core/autocast.h"
#include "core/error.h"
#include "guidance/random_clip.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/utils.h>

namespace clipguide::guidance {
namespace {

TEST(GraphedImageEncoder, MatchesEagerOnCuda) {
  if (!GraphedImageEncoder::available()) {
    GraphedImageEncoder encoder(test::random_tiny_vit().model, at::kFloat);
    EXPECT_THROW(encoder(at::rand({2, 3, 32, 32})), Error);
    GTEST_SKIP() << "LibTorch without CUDA: CUDA graphs unavailable";
  }
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  GuideMember member = test::random_tiny_vit();
  member.model->to(at::Device(at::kCUDA, 0));
  for (at::ScalarType autocast : {at::kFloat, at::kBFloat16}) {
    GraphedImageEncoder encoder(member.model, autocast);
    for (int64_t n : {8, 8, 8, 4}) {  // replays, then a new capture for another shape
      torch::manual_seed(n);
      at::Tensor pixels = at::randn({n, 3, 32, 32}, at::Device(at::kCUDA, 0));  // (N, 3, S, S)
      at::Tensor weights = at::randn({n, 32}, pixels.options());               // (N, E)
      at::Tensor eager_in = pixels.clone().requires_grad_(true), graph_in = pixels.clone().requires_grad_(true);
      at::Tensor eager;
      {
        clipguide::AutocastGuard guard(at::kCUDA, autocast);
        eager = member.model->encode_image(eager_in).to(at::kFloat);
      }
      at::Tensor graphed = encoder(graph_in);
      (eager * weights).sum().backward();
      (graphed * weights).sum().backward();
      std::printf("%s N=%lld: features max diff %.2e, gradient max diff %.2e\n",
                  clipguide::precision_name(autocast).c_str(), static_cast<long long>(n),
                  clipguide::test::max_abs_diff(graphed, eager), clipguide::test::max_abs_diff(graph_in.grad(), eager_in.grad()));
      const double tol = autocast == at::kFloat ? 1e-5 : 1e-2;
      EXPECT_TENSOR_CLOSE(graphed, eager, tol, tol);
      EXPECT_TENSOR_CLOSE(graph_in.grad(), eager_in.grad(), tol, tol);
    }
  }
}

TEST(GraphedImageEncoder, GuideWithCudaGraphsGivesTheEagerLoss) {
  if (!GraphedImageEncoder::available() || !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  GuideMember member = test::random_tiny_vit();
  member.model->to(cuda);
  GuideOptions options;
  options.cutouts.cutn = 8;
  options.augments = parse_augments("none");
  Guide guide({member}, options);
  torch::manual_seed(1);
  guide.set_prompts({GuidePrompt::from_image(at::rand({3, 32, 32}))});
  for (int step = 0; step < 3; ++step) {
    at::Tensor image = at::rand({1, 3, 48, 48}, at::TensorOptions().device(cuda));
    at::Tensor a = image.clone().requires_grad_(true), b = image.clone().requires_grad_(true);
    options.cuda_graphs = false;
    guide.set_options(options);
    at::Tensor eager = guide.loss(a, step);
    eager.backward();
    options.cuda_graphs = true;
    guide.set_options(options);
    at::Tensor graphed = guide.loss(b, step);
    graphed.backward();
    EXPECT_NEAR(graphed.item<double>(), eager.item<double>(), 1e-5);
    EXPECT_TENSOR_CLOSE(b.grad(), a.grad(), 1e-6, 1e-4);
  }
}

}  // namespace
}  // namespace clipguide::guidance
