// Tests for clipnet/train/losses: open_clip's ClipLoss and SigLipLoss values and gradients on fixed
// features (tests/reference/train_losses.py), the logit-scale clamp, and shape errors.
#include "clipnet/train/losses.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

namespace clipguide::train {
namespace {

clipguide::TensorMap reference() { return clipguide::read_safetensors(test::fixture_dir("train_losses") / "losses.safetensors").tensors; }

TEST(Losses, ClipLossMatchesOpenClip) {
  auto ref = reference();
  SingleProcess comm;
  at::Tensor image = ref.at("image").clone().requires_grad_();
  at::Tensor text = ref.at("text").clone().requires_grad_();
  at::Tensor scale = ref.at("logit_scale_param").clone().requires_grad_();
  at::Tensor loss = clip_loss(image, text, scale.exp(), comm);
  loss.backward();
  std::printf("clip loss %.10f (open_clip %.10f), grad image max diff %.3g\n", loss.item<double>(),
              ref.at("clip_loss").item<double>(), test::max_abs_diff(image.grad(), ref.at("clip_grad_image")));
  EXPECT_TENSOR_CLOSE(loss, ref.at("clip_loss"), 1e-12, 1e-12);
  EXPECT_TENSOR_CLOSE(image.grad(), ref.at("clip_grad_image"), 1e-12, 1e-10);
  EXPECT_TENSOR_CLOSE(text.grad(), ref.at("clip_grad_text"), 1e-12, 1e-10);
  EXPECT_TENSOR_CLOSE(scale.grad(), ref.at("clip_grad_logit_scale_param"), 1e-12, 1e-10);
}

TEST(Losses, SiglipLossMatchesOpenClip) {
  auto ref = reference();
  SingleProcess comm;
  at::Tensor image = ref.at("image").clone().requires_grad_();
  at::Tensor text = ref.at("text").clone().requires_grad_();
  at::Tensor scale = ref.at("logit_scale_param").clone().requires_grad_();
  at::Tensor bias = ref.at("logit_bias").clone().requires_grad_();
  ContrastiveLossOptions options;
  options.siglip = true;
  at::Tensor loss = contrastive_loss(image, text, scale.exp(), bias, comm, options);
  loss.backward();
  std::printf("siglip loss %.10f (open_clip %.10f)\n", loss.item<double>(), ref.at("siglip_loss").item<double>());
  EXPECT_TENSOR_CLOSE(loss, ref.at("siglip_loss"), 1e-12, 1e-12);
  EXPECT_TENSOR_CLOSE(image.grad(), ref.at("siglip_grad_image"), 1e-12, 1e-10);
  EXPECT_TENSOR_CLOSE(text.grad(), ref.at("siglip_grad_text"), 1e-12, 1e-10);
  EXPECT_TENSOR_CLOSE(scale.grad(), ref.at("siglip_grad_logit_scale_param"), 1e-12, 1e-10);
  EXPECT_TENSOR_CLOSE(bias.grad(), ref.at("siglip_grad_logit_bias"), 1e-12, 1e-10);
}

TEST(Losses, Float32AgreesWithFloat64) {
  auto ref = reference();
  SingleProcess comm;
  at::Tensor loss = clip_loss(ref.at("image").to(at::kFloat), ref.at("text").to(at::kFloat),
                              ref.at("logit_scale_param").exp().to(at::kFloat), comm);
  EXPECT_NEAR(loss.item<double>(), ref.at("clip_loss").item<double>(), 1e-5);
}

TEST(Losses, LogitScaleIsClampedAtLn100) {
  at::Tensor p = at::full({}, 5.0).requires_grad_();
  clamp_logit_scale_(p);
  EXPECT_NEAR(p.item<double>(), std::log(100.0), 1e-7);
  EXPECT_TRUE(p.requires_grad());
  at::Tensor q = at::full({}, 2.0);
  clamp_logit_scale_(q);
  EXPECT_EQ(q.item<double>(), 2.0);
}

TEST(Losses, ShapeErrorsNameTheShapes) {
  SingleProcess comm;
  try {
    clip_loss(at::zeros({4, 8}), at::zeros({3, 8}), at::ones({}), comm);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 8]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(siglip_loss(at::zeros({4, 8}), at::zeros({4, 8}), at::ones({}), at::Tensor(), comm), Error);
}

TEST(Losses, GatherRowsIsIdentityForOneProcess) {
  SingleProcess comm;
  at::Tensor x = at::randn({3, 4});
  EXPECT_TRUE(gather_rows(comm, x, true).is_same(x));
}

}  // namespace
}  // namespace clipguide::train
