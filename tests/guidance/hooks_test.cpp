// Tests for guidance/hooks and Guide::mask_prompt: a masked prompt's gradient stays inside its mask, frozen
// regions get no gradient, clipping bounds the norm, observers see step and name, bad masks and bad hook
// results are clear errors. Tiny random-weight CLIP model (32 px) from the clip_parity fixture.
// Shapes: B images, H x W pixels.
#include "guidance/hooks.h"

#include "core/error.h"
#include "guidance/guide.h"
#include "guidance/tiny_clip.h"
#include "test_util.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>

#include <string>
#include <vector>

namespace clipguide::guidance {
namespace {

using test::tiny_member;
using test::tiny_options;

at::Tensor test_image(int64_t size = 32) {
  auto gen = at::detail::createCPUGenerator(11);
  return at::rand({1, 3, size, size}, gen);  // (1, 3, H, W) in [0, 1]
}

at::Tensor image_grad(Guide& guide, const at::Tensor& image, int64_t step = 0) {
  at::Tensor x = image.detach().clone().requires_grad_(true);
  guide.loss(x, step).backward();
  return x.grad();  // (B, 3, H, W)
}

// (H, W) mask: 1 on the left `cols` columns.
at::Tensor left_mask(int64_t size, int64_t cols) {
  at::Tensor m = at::zeros({size, size});
  m.narrow(1, 0, cols).fill_(1.0);
  return m;
}

TEST(HookMask, ShapesAndValuesAreChecked) {
  EXPECT_NO_THROW(check_mask(at::ones({4, 5}), "m"));
  EXPECT_NO_THROW(check_mask(at::ones({1, 1, 4, 5}), "m"));
  EXPECT_THROW(check_mask(at::ones({3, 4, 5}), "m"), Error);
  EXPECT_THROW(check_mask(at::ones({2, 1, 4, 5}), "m"), Error);
  EXPECT_THROW(check_mask(at::ones({1, 3, 4, 5}), "m"), Error);
  EXPECT_THROW(check_mask(at::ones({4, 5}) * 2, "m"), Error);
  EXPECT_THROW(check_mask(at::Tensor(), "m"), Error);
  try {
    check_mask(at::ones({3, 4, 5}), "prompt 2");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 4, 5]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("prompt 2"), std::string::npos) << e.what();
  }
  at::Tensor r = resize_mask(left_mask(8, 4), 16, 32, at::TensorOptions().dtype(at::kDouble));
  EXPECT_EQ(shape_str(r.sizes()), "[1, 1, 16, 32]");
  EXPECT_EQ(r.scalar_type(), at::kDouble);
  EXPECT_EQ(r.select(3, 0).min().item<double>(), 1.0);
  EXPECT_EQ(r.select(3, 31).max().item<double>(), 0.0);
}

TEST(HookMask, MaskPromptConfinesItsGradient) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  guide.set_prompts(text_prompts("a red apple"));
  at::Tensor image = test_image();
  at::Tensor full = image_grad(guide, image);
  for (at::Tensor mask : {left_mask(32, 12), left_mask(32, 12).view({1, 1, 32, 32}), left_mask(8, 3)}) {
    guide.mask_prompt(0, mask);
    at::Tensor g = image_grad(guide, image);  // (1, 3, 32, 32)
    at::Tensor m = resize_mask(mask, 32, 32, g.options());
    at::Tensor outside = g.masked_select((m == 0).expand_as(g));
    ASSERT_GT(outside.numel(), 0);
    EXPECT_EQ(outside.abs().max().item<double>(), 0.0) << "mask " << shape_str(mask.sizes());
    EXPECT_GT(g.masked_select((m == 1).expand_as(g)).abs().max().item<double>(), 0.0);
  }
  // Where the mask is 1 the masked prompt's gradient is the unmasked one: same values, same cutouts.
  guide.mask_prompt(0, left_mask(32, 12));
  at::Tensor g = image_grad(guide, image);
  EXPECT_TENSOR_CLOSE(g.narrow(3, 0, 12), full.narrow(3, 0, 12), 1e-9, 1e-4);
  // The loss value does not change with the mask.
  guide.mask_prompt(0, at::Tensor());
  EXPECT_TENSOR_CLOSE(image_grad(guide, image), full, 0.0, 0.0);
  EXPECT_THROW(guide.mask_prompt(0, at::ones({2, 32, 32})), Error);
  EXPECT_THROW(guide.mask_prompt(3, left_mask(32, 2)), Error);
}

TEST(HookMask, TwoPromptsWithDifferentMasks) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  guide.set_prompts(text_prompts("sky|grass"));
  at::Tensor top = at::zeros({32, 32});
  top.narrow(0, 0, 10).fill_(1.0);
  guide.mask_prompt(0, top);
  guide.mask_prompt(1, left_mask(32, 10));
  at::Tensor g = image_grad(guide, test_image());
  // Bottom-right block: in neither mask.
  EXPECT_EQ(g.narrow(2, 10, 22).narrow(3, 10, 22).abs().max().item<double>(), 0.0);
  EXPECT_GT(g.narrow(2, 0, 10).abs().max().item<double>(), 0.0);
  EXPECT_GT(g.narrow(3, 0, 10).abs().max().item<double>(), 0.0);
}

TEST(HookSet, FreezeRegionZeroesTheImageGradientThere) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  guide.set_prompts(text_prompts("a boat|a wave:0.5"));
  at::Tensor image = test_image(40);
  at::Tensor free = image_grad(guide, image);
  guide.hooks().freeze_region(left_mask(20, 5));  // resized: the left 10 of 40 columns
  at::Tensor g = image_grad(guide, image);
  EXPECT_EQ(g.narrow(3, 0, 9).abs().max().item<double>(), 0.0);  // column 9 is 3/4 frozen (bilinear)
  EXPECT_TENSOR_CLOSE(g.narrow(3, 11, 29), free.narrow(3, 11, 29), 0.0, 0.0);
  EXPECT_EQ(guide.hooks().names(HookTarget::kImage), std::vector<std::string>{"freeze_region"});
  EXPECT_TRUE(guide.hooks().remove("freeze_region"));
  EXPECT_TENSOR_CLOSE(image_grad(guide, image), free, 0.0, 0.0);
  EXPECT_THROW(guide.hooks().freeze_region(at::ones({3, 20, 20})), Error);
}

TEST(HookSet, ClipNormBoundsImageAndParameterGradients) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  guide.set_prompts(text_prompts("a lamp"));
  at::Tensor image = test_image();
  const double free_norm = image_grad(guide, image).norm().item<double>();
  const double bound = free_norm / 10;
  guide.hooks().clip_grad_norm(bound, HookTarget::kImage);
  const double clipped = image_grad(guide, image).norm().item<double>();
  std::printf("|grad| %.4e → %.4e (bound %.4e)\n", free_norm, clipped, bound);
  EXPECT_LE(clipped, bound * (1 + 1e-5));
  EXPECT_GT(clipped, bound * (1 - 1e-3));

  HookSet set;
  set.clip_grad_norm(1.0);  // parameters
  at::Tensor big = at::zeros({5, 5}).requires_grad_(true), small = at::zeros({3}).requires_grad_(true);
  (big * at::randn({5, 5}) * 100).sum().backward();
  (small * 0.01).sum().backward();
  const at::Tensor small_grad = small.grad().clone();
  set.apply_to_parameters({big, small, at::zeros({2}).requires_grad_(true)}, 0);  // the last has no grad
  EXPECT_NEAR(big.grad().norm().item<double>(), 1.0, 1e-5);
  EXPECT_TENSOR_CLOSE(small.grad(), small_grad, 0.0, 0.0);
  EXPECT_THROW(set.clip_grad_norm(0.0), Error);
}

TEST(HookSet, UserHooksSeeStepAndNameAndMayChangeGradients) {
  HookSet set;
  std::vector<std::string> seen;
  set.add(HookTarget::kImage, "observe", observer_hook([&](const at::Tensor& g, const HookContext& c) {
            seen.push_back(c.name + "@" + std::to_string(c.step) + ":" + shape_str(g.sizes()));
          }));
  set.add(HookTarget::kImage, "double", [](const at::Tensor& g, const HookContext&) { return g * 2; });
  at::Tensor x = at::rand({1, 3, 4, 4}).requires_grad_(true);
  set.attach_to_image(x, 9).sum().backward();
  EXPECT_EQ(seen, std::vector<std::string>{"image@9:[1, 3, 4, 4]"});
  EXPECT_TENSOR_CLOSE(x.grad(), at::full({1, 3, 4, 4}, 2.0), 0.0, 0.0);
  // The hook lives on the alias, not on x: a plain backward through x is untouched.
  x.grad().zero_();
  x.sum().backward();
  EXPECT_TENSOR_CLOSE(x.grad(), at::ones({1, 3, 4, 4}), 0.0, 0.0);
  // Replacing by name, and a hook returning the wrong shape.
  set.add(HookTarget::kImage, "double", [](const at::Tensor& g, const HookContext&) { return g.sum(); });
  EXPECT_EQ(set.names(HookTarget::kImage).size(), 2u);
  at::Tensor y = at::rand({1, 3, 4, 4}).requires_grad_(true);
  EXPECT_ANY_THROW(set.attach_to_image(y, 0).sum().backward());
  set.clear();
  EXPECT_TRUE(set.names(HookTarget::kImage).empty());
  EXPECT_THROW(set.add(HookTarget::kImage, "empty", GradientHook()), Error);
}

}  // namespace
}  // namespace clipguide::guidance
