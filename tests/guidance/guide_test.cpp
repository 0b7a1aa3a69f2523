// Tests for guidance/guide: the loss is finite and differentiable, an ensemble is the weighted sum of its
// members, weights and stops act on the gradient as VQGAN+CLIP's do, prompts can be edited at runtime,
// and the report agrees with the loss. Tiny random-weight CLIP models (32 px) from the clip_parity fixture.
// Shapes: B images, H x W pixels, E embedding width.
#include "guidance/guide.h"

#include "core/error.h"
#include "core/image_io.h"
#include "guidance/tiny_clip.h"
#include "test_util.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/rand.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>

namespace clipguide::guidance {
namespace {

using test::tiny_member;
using test::tiny_options;

// d loss / d image for a fresh copy of `image` at `step`.
at::Tensor image_grad(Guide& guide, const at::Tensor& image, int64_t step, double* value = nullptr) {
  at::Tensor x = image.detach().clone().requires_grad_(true);  // (B, 3, H, W)
  at::Tensor loss = guide.loss(x, step);
  if (value) *value = loss.item<double>();
  loss.backward();
  return x.grad();
}

at::Tensor test_image(int64_t size = 32, uint64_t seed = 1) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::rand({1, 3, size, size}, gen);  // (1, 3, H, W) in [0, 1]
}

TEST(Guide, LossIsFiniteAndGradientReachesImage) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  guide.set_prompts(text_prompts("a red circle|a blue square:0.5"));
  at::Tensor x = test_image(48).requires_grad_(true);  // (1, 3, 48, 48): not the model's 32 px
  at::Tensor loss = guide(x);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  loss.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(x.grad().isfinite().all().item<bool>());
  const double norm = x.grad().norm().item<double>();
  EXPECT_GT(norm, 0.0);
  EXPECT_EQ(guide.step(), 1);  // operator() advances the step

  GuideReport r = guide.last_report();
  EXPECT_NEAR(r.total, loss.item<double>(), 1e-6);
  ASSERT_EQ(r.prompts.size(), 2u);
  ASSERT_EQ(r.members.size(), 1u);
  EXPECT_NEAR(r.prompts[0].loss + r.prompts[1].loss, r.total, 1e-5);
  for (const auto& p : r.prompts) EXPECT_TRUE(p.similarity >= -1.0 && p.similarity <= 1.0) << p.similarity;
  EXPECT_EQ(r.prompts[1].label, "a blue square");
  std::printf("loss %.6f, |grad| %.3e, similarity %.4f / %.4f\n", loss.item<double>(), norm, r.prompts[0].similarity,
              r.prompts[1].similarity);
}

TEST(Guide, EnsembleIsWeightedSumOfMembers) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideMember a = tiny_member("hf_clip", 0.7), b = tiny_member("openai_vit", 1.3);
  GuideMember a1 = a, b1 = b;
  a1.weight = b1.weight = 1.0;
  Guide ensemble({a, b}, tiny_options(3)), only_a({a1}, tiny_options(3)), only_b({b1}, tiny_options(3));
  for (Guide* g : {&ensemble, &only_a, &only_b}) g->set_prompts(text_prompts("a cat|a dog:-0.4"));
  at::Tensor image = test_image(40);
  double le = 0, la = 0, lb = 0;
  at::Tensor ge = image_grad(ensemble, image, 5, &le);
  at::Tensor ga = image_grad(only_a, image, 5, &la);
  at::Tensor gb = image_grad(only_b, image, 5, &lb);
  std::printf("ensemble %.7f, 0.7 a + 1.3 b = %.7f\n", le, 0.7 * la + 1.3 * lb);
  EXPECT_NEAR(le, 0.7 * la + 1.3 * lb, 1e-5);
  EXPECT_TENSOR_CLOSE(ge, ga * 0.7 + gb * 1.3, 1e-6, 1e-4);
  auto r = ensemble.last_report();
  ASSERT_EQ(r.members.size(), 2u);
  EXPECT_NEAR(r.members[0].loss, la, 1e-5);
  EXPECT_NEAR(r.members[1].loss, lb, 1e-5);
}

TEST(Guide, SameStepSameLossOtherStepOtherCutouts) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideOptions options = tiny_options();
  options.augments = AugmentOptions{};  // flips on: randomness that must still repeat per step
  Guide guide({tiny_member("hf_clip")}, options);
  guide.set_prompts(text_prompts("a tree"));
  at::Tensor image = test_image();
  at::NoGradGuard no_grad;
  EXPECT_EQ(guide.loss(image, 4).item<double>(), guide.loss(image, 4).item<double>());
  EXPECT_NE(guide.loss(image, 4).item<double>(), guide.loss(image, 5).item<double>());
}

TEST(Guide, NegativeWeightFlipsTheGradient) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  guide.set_prompts({GuidePrompt::from_text("a house", 1.5)});
  at::Tensor image = test_image();
  double plus = 0, minus = 0;
  at::Tensor gp = image_grad(guide, image, 2, &plus);
  guide.set_prompt_weight(0, -1.5);
  at::Tensor gm = image_grad(guide, image, 2, &minus);
  EXPECT_NEAR(minus, -plus, 1e-6);
  EXPECT_GT(gp.abs().max().item<double>(), 0.0);
  EXPECT_TENSOR_CLOSE(gm, -gp, 1e-7, 1e-5);
}

TEST(Guide, StopZeroesTheGradientOnceReached) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  guide.set_prompts({GuidePrompt::from_text("a house")});
  at::Tensor image = test_image();
  double free_loss = 0, stopped_loss = 0, partly_loss = 0;
  at::Tensor free_grad = image_grad(guide, image, 0, &free_loss);
  // Spherical distances lie in [0, pi^2 / 2]: a stop above every distance means all cutouts have arrived.
  guide.set_prompt_weight(0, 1.0, 5.0);
  at::Tensor stopped = image_grad(guide, image, 0, &stopped_loss);
  EXPECT_EQ(stopped.abs().max().item<double>(), 0.0);
  EXPECT_NEAR(stopped_loss, free_loss, 1e-6);  // the value is unchanged, only the pull stops
  // A stop far below every distance changes nothing.
  guide.set_prompt_weight(0, 1.0, -5.0);
  at::Tensor partly = image_grad(guide, image, 0, &partly_loss);
  EXPECT_TENSOR_CLOSE(partly, free_grad, 0.0, 0.0);
}

TEST(Guide, PromptsCanBeAddedEditedAndRemoved) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideMember member = tiny_member("hf_clip");
  Guide guide({member}, tiny_options());
  EXPECT_EQ(guide.add_prompt(GuidePrompt::from_text("one")), 0u);
  EXPECT_EQ(guide.add_prompt(GuidePrompt::from_text("two", 2.0)), 1u);
  EXPECT_EQ(guide.add_prompt(GuidePrompt::from_image(test_image(20), 0.5)), 2u);
  ASSERT_EQ(guide.prompts().size(), 3u);
  EXPECT_EQ(guide.prompts()[2].label(), "<image>");

  // Text embeddings are encode_text of the tokenised text, and cached.
  {
    at::NoGradGuard no_grad;
    at::Tensor tokens = member.tokenizer->tokenize({"two"}, member.config.text.context_length);
    EXPECT_TENSOR_CLOSE(guide.prompt_embedding(1), member.model->encode_text(tokens), 1e-6, 0.0);
  }
  at::Tensor two = guide.prompt_embedding(1);
  guide.edit_prompt(1, GuidePrompt::from_text("two", -1.0));  // same text: same embedding, new weight
  EXPECT_TRUE(guide.prompt_embedding(1).is_same(two));
  EXPECT_EQ(guide.prompts()[1].weight, -1.0);
  guide.edit_prompt(1, GuidePrompt::from_text("three"));
  EXPECT_FALSE(guide.prompt_embedding(1).equal(two));
  guide.remove_prompt(0);
  ASSERT_EQ(guide.prompts().size(), 2u);
  EXPECT_EQ(guide.prompts()[0].text, "three");
  EXPECT_THROW(guide.remove_prompt(5), Error);
  EXPECT_THROW(guide.edit_prompt(7, GuidePrompt::from_text("x")), Error);
  EXPECT_THROW(guide.add_prompt(GuidePrompt::from_text("")), Error);
  EXPECT_THROW(guide.add_prompt(GuidePrompt::from_image(at::rand({2, 3, 8, 8}))), Error);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(std::isfinite(guide.loss(test_image(), 0).item<double>()));
}

TEST(Guide, ImagePromptFromFileMatchesPreprocessedTensor) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  if (!clipguide::image_io_available()) GTEST_SKIP() << "built without image file support";
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  // 32 px image: the model's size, so the file path (8-bit) and the tensor path agree up to rounding.
  at::Tensor pixels = (test_image(32)[0] * 255).round().to(at::kByte);  // (3, 32, 32) uint8
  auto path = clipguide::test::temp_dir() / "prompt.png";
  clipguide::write_image(path, pixels);
  guide.set_prompts({GuidePrompt::from_image_file(path), GuidePrompt::from_image(pixels.to(at::kFloat) / 255)});
  EXPECT_TENSOR_CLOSE(guide.prompt_embedding(0), guide.prompt_embedding(1), 1e-4, 1e-4);
  EXPECT_THROW(guide.add_prompt(GuidePrompt::from_image_file(path.parent_path() / "missing.png")), Error);
}

TEST(Guide, RegularisersAddTheirWeightedValues) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  GuideOptions options = tiny_options();
  Guide guide({tiny_member("hf_clip")}, options);
  guide.set_prompts(text_prompts("a cat"));
  at::Tensor image = test_image();
  at::NoGradGuard no_grad;
  const double base = guide.loss(image, 3).item<double>();
  at::Tensor init = test_image(16, 9);  // resized to the image
  options.tv_weight = 2.0;
  options.symmetry_weight = 0.5;
  options.saturation_weight = -0.25;
  options.init_weight = 3.0;
  options.init_image = init;
  guide.set_options(options);
  GuideReport r;
  const double total = guide.loss(image, 3, &r).item<double>();
  EXPECT_NEAR(r.tv, 2.0 * total_variation(image).item<double>(), 1e-6);
  EXPECT_NEAR(r.symmetry, 0.5 * symmetry_loss(image).item<double>(), 1e-6);
  EXPECT_NEAR(r.saturation, -0.25 * saturation_loss(image).item<double>(), 1e-6);
  EXPECT_GT(r.init, 0.0);
  EXPECT_NEAR(total, base + r.tv + r.symmetry + r.saturation + r.init, 1e-5);
  options.init_image = at::Tensor();
  guide.set_options(options);
  EXPECT_THROW(guide.loss(image, 3), Error);
}

TEST(Guide, NoPromptsGivesAZeroDifferentiableLoss) {
  CLIPGUIDE_REQUIRE_VOCABULARY();
  Guide guide({tiny_member("hf_clip")}, tiny_options());
  at::Tensor x = test_image().requires_grad_(true);
  at::Tensor loss = guide(x);
  EXPECT_EQ(loss.item<double>(), 0.0);
  loss.backward();
  EXPECT_EQ(x.grad().abs().max().item<double>(), 0.0);
  EXPECT_THROW(guide(at::rand({3, 32, 32})), Error);
  EXPECT_THROW(Guide({}, tiny_options()), Error);
}

TEST(SplitMemberSpec, TrailingNumberIsTheWeight) {
  EXPECT_EQ(split_member_spec("models/ViT-B-32.pt"), (std::pair<std::string, double>{"models/ViT-B-32.pt", 1.0}));
  EXPECT_EQ(split_member_spec("a.pt:0.5"), (std::pair<std::string, double>{"a.pt", 0.5}));
  EXPECT_EQ(split_member_spec("C:\\m\\a.pt"), (std::pair<std::string, double>{"C:\\m\\a.pt", 1.0}));
  EXPECT_EQ(split_member_spec("http://h/x:2"), (std::pair<std::string, double>{"http://h/x", 2.0}));
}

}  // namespace
}  // namespace clipguide::guidance
