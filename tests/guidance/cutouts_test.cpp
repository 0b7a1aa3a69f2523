// Tests for guidance/cutouts: placement geometry (checked exactly on linear ramps, which bilinear sampling
// and average pooling reproduce), methods, determinism, batching, gradients and augmentation parsing.
#include "guidance/cutouts.h"

#include "core/error.h"
#include "test_util.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/stack.h>

#include <cmath>
#include <cstdio>
#include <string>

namespace clipguide::guidance {
namespace {

AugmentOptions no_augment() { return parse_augments("none"); }

// (1, 3, H, W) image whose channel 0 is the normalised x coordinate of each pixel centre, channel 1 the y.
at::Tensor ramp(int64_t h, int64_t w) {
  auto x = ((at::arange(w, at::kDouble) * 2 + 1) / w - 1).view({1, w}).expand({h, w});
  auto y = ((at::arange(h, at::kDouble) * 2 + 1) / h - 1).view({h, 1}).expand({h, w});
  return at::stack({x, y, x * 0}, 0).unsqueeze(0).contiguous();
}

TEST(Cutouts, RandomCropsLandWhereTheirTransformsSay) {
  const int64_t s = 16;
  Cutouts cutouts({.cutn = 12, .cut_pow = 1.0}, no_augment(), 7);
  auto image = ramp(40, 56);
  auto out = cutouts(image, s);  // (12, 3, 16, 16)
  ASSERT_EQ(shape_str(out.sizes()), "[12, 3, 16, 16]");
  const auto& t = cutouts.last_transforms();
  auto u = ((at::arange(s, at::kDouble) * 2 + 1) / s - 1);
  for (int64_t i = 0; i < 12; ++i) {
    auto want_x = t[i][0][0] * u.view({1, s}) + t[i][0][2];  // (1, S): x varies along columns
    auto want_y = t[i][1][1] * u.view({s, 1}) + t[i][1][2];  // (S, 1)
    // Exact inside; in the outermost cutout pixels, a crop touching the image edge samples beyond the
    // last pixel centre, where border padding holds the value: off by at most half an image pixel.
    auto inner = [&](const at::Tensor& t) { return t.narrow(0, 1, s - 2).narrow(1, 1, s - 2); };
    EXPECT_TENSOR_CLOSE(inner(out[i][0]), inner(want_x.expand({s, s})), 1e-9, 0.0);
    EXPECT_TENSOR_CLOSE(inner(out[i][1]), inner(want_y.expand({s, s})), 1e-9, 0.0);
    EXPECT_TENSOR_CLOSE(out[i][0], want_x.expand({s, s}), 1.0 / 56, 0.0);
    EXPECT_TENSOR_CLOSE(out[i][1], want_y.expand({s, s}), 1.0 / 40, 0.0);
    // Crops are squares inside the image, at least S pixels wide.
    double side_px = t[i][0][0].item<double>() * 56;
    EXPECT_NEAR(side_px, t[i][1][1].item<double>() * 40, 1e-9);
    EXPECT_GE(side_px, s - 1e-9);
    EXPECT_LE(side_px, 40 + 1e-9);
    EXPECT_GE(t[i][0][2].item<double>() - t[i][0][0].item<double>(), -1 - 1e-9);
    EXPECT_LE(t[i][0][2].item<double>() + t[i][0][0].item<double>(), 1 + 1e-9);
  }
}

TEST(Cutouts, FullSizeCropIsTheImage) {
  auto image = at::rand({1, 3, 24, 24}, at::kDouble);
  Cutouts cutouts({.cutn = 3}, no_augment(), 1);
  auto out = cutouts(image, 24);
  for (int64_t i = 0; i < 3; ++i) EXPECT_TENSOR_CLOSE(out[i], image[0], 1e-12, 0.0);
}

TEST(Cutouts, CutPowShiftsSizes) {
  auto image = at::rand({1, 3, 64, 64});
  Cutouts big({.cutn = 200, .cut_pow = 0.3}, no_augment(), 3), small({.cutn = 200, .cut_pow = 3.0}, no_augment(), 3);
  big(image, 8);
  small(image, 8);
  double big_mean = big.last_transforms().select(1, 0).select(1, 0).mean().item<double>();
  double small_mean = small.last_transforms().select(1, 0).select(1, 0).mean().item<double>();
  EXPECT_GT(big_mean, small_mean + 0.2) << "mean crop scale " << big_mean << " vs " << small_mean;
}

TEST(Cutouts, DeterministicForASeed) {
  auto image = at::rand({2, 3, 32, 48});
  AugmentOptions all = parse_augments("flip,affine:0.7,perspective:0.5,jitter,sharpness,gaussian,erasing,noise");
  Cutouts a({.cutn = 8}, all, 42), b({.cutn = 8}, all, 42), c({.cutn = 8}, all, 43);
  auto ya = a(image, 16), yb = b(image, 16), yc = c(image, 16);
  EXPECT_TRUE(at::equal(ya, yb));
  EXPECT_FALSE(at::equal(ya, yc));
  a.reseed(42);
  EXPECT_TRUE(at::equal(a(image, 16), ya));
}

TEST(Cutouts, BatchRowsComeFromTheirImage) {
  auto image = at::cat({at::full({1, 3, 20, 20}, 0.25), at::full({1, 3, 20, 20}, 0.75)}, 0);
  Cutouts cutouts({.cutn = 5}, parse_augments("flip,affine,perspective"), 2);
  auto out = cutouts(image, 8);
  ASSERT_EQ(out.size(0), 10);
  // Border padding keeps constant images constant under any geometry.
  EXPECT_TENSOR_CLOSE(out.narrow(0, 0, 5), at::full({5, 3, 8, 8}, 0.25), 1e-6, 0.0);
  EXPECT_TENSOR_CLOSE(out.narrow(0, 5, 5), at::full({5, 3, 8, 8}, 0.75), 1e-6, 0.0);
}

TEST(Cutouts, FlipMirrorsTheCrop) {
  AugmentOptions flip = no_augment();
  flip.flip = 1.0;
  Cutouts cutouts({.cutn = 4}, flip, 5);
  auto out = cutouts(ramp(32, 32), 8);
  for (int64_t i = 0; i < 4; ++i) {
    auto row = out[i][0][0];
    EXPECT_GT(row[0].item<double>(), row[7].item<double>()) << "x decreases along a flipped cutout";
  }
}

TEST(Cutouts, LatestPoolsTheWholeImage) {
  auto image = at::rand({1, 3, 32, 32}, at::kDouble);
  Cutouts cutouts({.cutn = 4, .method = CutMethod::kLatest}, no_augment(), 1);
  auto out = cutouts(image, 8);
  for (int64_t i = 1; i < 4; ++i) EXPECT_TENSOR_CLOSE(out[i], out[0], 1e-12, 0.0);
  EXPECT_GT(out.std().item<double>(), 0.0);
}

TEST(Cutouts, DiscoOverviewsSeeTheWholeImage) {
  Cutouts cutouts({.cutn = 6, .method = CutMethod::kDisco, .overview = 2}, no_augment(), 9);
  cutouts(ramp(20, 40), 8);
  const auto& t = cutouts.last_transforms();
  // Overviews: a square of the long side (40 px) centred: x spans [-1, 1], y spans [-2, 2] (padded).
  EXPECT_NEAR(std::abs(t[0][0][0].item<double>()), 1.0, 1e-9);
  EXPECT_NEAR(t[0][1][1].item<double>(), 2.0, 1e-9);
  EXPECT_LT(t[1][0][0].item<double>(), 0.0) << "the second overview is flipped";
  EXPECT_LT(std::abs(t[3][0][0].item<double>()), 1.0) << "inner cuts are smaller";
}

TEST(Cutouts, GradientsReachTheImage) {
  auto image = at::rand({1, 3, 30, 30}, at::kDouble).requires_grad_(true);
  Cutouts cutouts({.cutn = 4}, parse_augments("flip,affine,perspective,jitter,sharpness,noise"), 3);
  cutouts(image, 12).pow(2).sum().backward();
  ASSERT_TRUE(image.grad().defined());
  EXPECT_GT(image.grad().abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(image.grad().isfinite().all().item<bool>());
}

TEST(Cutouts, ErasingAndNoiseChangePixels) {
  auto image = at::full({1, 3, 16, 16}, 0.1);
  auto erased = Cutouts({.cutn = 4}, parse_augments("erasing"), 1)(image, 16);
  EXPECT_TRUE(erased.eq(0.5).any().item<bool>());
  EXPECT_TRUE(erased.eq(0.1f).any().item<bool>());
  auto noisy = Cutouts({.cutn = 4}, parse_augments("noise"), 1)(image, 16);
  EXPECT_GT((noisy - 0.1).abs().max().item<double>(), 0.0);
}

TEST(Cutouts, RotationAndCropsComposeIntoTheHomography) {
  // A full-size crop of a ramp: each cutout is the ramp mapped by its own transform (affine: exact inside).
  const int64_t s = 16;
  auto image = ramp(s, s);
  auto u = ((at::arange(s, at::kDouble) * 2 + 1) / s - 1);
  for (const char* list : {"Ro", "Cr", "Re"}) {
    AugmentOptions a = parse_augments(list);
    a.flip = 0;
    Cutouts cutouts({.cutn = 6, .min_size = 1.0}, a, 5);
    auto out = cutouts(image, s);
    const auto& t = cutouts.last_transforms();
    for (int64_t i = 0; i < 6; ++i) {
      auto want_x = t[i][0][0] * u.view({1, s}) + t[i][0][1] * u.view({s, 1}) + t[i][0][2];
      auto inner = [&](const at::Tensor& x) { return x.narrow(0, 2, s - 4).narrow(1, 2, s - 4); };
      EXPECT_TENSOR_CLOSE(inner(out[i][0]), inner(want_x), 1e-9, 0.0) << list << " cutout " << i;
      const double sx = t[i][0][0].item<double>(), sy = t[i][1][1].item<double>();
      if (std::string(list) == "Ro") {
        EXPECT_NEAR(sx * sx + t[i][1][0].item<double>() * t[i][1][0].item<double>(), 1.0, 1e-9);  // a rotation
        EXPECT_LE(std::abs(t[i][1][0].item<double>()), std::sin(15.0 * 3.14159265358979 / 180) + 1e-9);
      } else {
        // An axis-aligned part inside the cutout: Cr square with side >= crop_min, Re of area >= 0.1.
        EXPECT_LE(std::abs(t[i][0][2].item<double>()) + sx, 1 + 1e-9);
        EXPECT_LE(std::abs(t[i][1][2].item<double>()) + sy, 1 + 1e-9);
        if (std::string(list) == "Cr") {
          EXPECT_NEAR(sx, sy, 1e-12);
          EXPECT_GE(sx, 0.8 - 1e-12);
        } else {
          EXPECT_GE(sx * sy, 0.1 - 1e-9);
          EXPECT_LE(sx / sy, 4.0 / 3 + 1e-9);
          EXPECT_GE(sx / sy, 3.0 / 4 - 1e-9);
        }
      }
    }
  }
}

TEST(Cutouts, ElasticAndThinPlateWarpsAreSmoothAndSliceable) {
  // On a ramp a cutout's channels 0 and 1 are the sampling grid itself: the warp's displacement shows.
  const int64_t s = 24;
  auto image = ramp(s, s);
  auto identity = Cutouts({.cutn = 4, .min_size = 1.0}, no_augment(), 2)(image, s);
  for (const char* list : {"Et", "Ts"}) {
    Cutouts cutouts({.cutn = 4, .min_size = 1.0}, parse_augments(list), 2);
    CutoutPlan plan = cutouts.plan(image, s);
    auto whole = cutouts.sample(image, plan, 0, 4);
    auto parts = at::cat({cutouts.sample(image, plan, 0, 1), cutouts.sample(image, plan, 1, 3)}, 0);
    EXPECT_TENSOR_CLOSE(parts, whole, 0.0, 0.0) << list;  // micro-batches see the same warps
    auto flipped = whole.clone();  // undo the placement's flip so that the identity compares
    for (int64_t i = 0; i < 4; ++i) {
      if (plan.transforms[i][0][0].item<double>() < 0) flipped[i] = whole[i].flip({2});
    }
    auto d = (flipped - identity).narrow(1, 0, 2).narrow(2, 2, s - 4).narrow(3, 2, s - 4);  // interior
    const double rms = d.pow(2).mean().sqrt().item<double>();
    // Neighbouring pixels move alike: the largest step between neighbours is far below the displacement.
    const double step = (d.narrow(3, 1, s - 5) - d.narrow(3, 0, s - 5)).abs().max().item<double>();
    std::printf("%s: RMS displacement %.4f, largest neighbour step %.4f\n", list, rms, step);
    EXPECT_GT(rms, 0.01) << list;
    EXPECT_LT(rms, 0.3) << list;
    EXPECT_LT(step, 0.5 * d.abs().max().item<double>() + 1e-3) << list;
    auto off = parse_augments(list);
    off.elastic = off.thin_plate = 0.0;
    EXPECT_TENSOR_CLOSE(Cutouts({.cutn = 4, .min_size = 1.0}, off, 2)(image, s), identity, 0.0, 0.0);
    auto grad_image = at::rand({1, 3, s, s}, at::kDouble).requires_grad_(true);
    Cutouts({.cutn = 2}, parse_augments(list), 3)(grad_image, 12).pow(2).sum().backward();
    EXPECT_TRUE(grad_image.grad().isfinite().all().item<bool>());
    EXPECT_GT(grad_image.grad().abs().sum().item<double>(), 0.0);
  }
}

TEST(ParseAugments, NamesCodesAndErrors) {
  auto a = parse_augments("Hf,Af:0.7, Pe ,jitter:0.25");
  EXPECT_EQ(a.flip, 1.0);
  EXPECT_EQ(a.affine, 0.7);
  EXPECT_EQ(a.perspective, 1.0);
  EXPECT_EQ(a.color_jitter, 0.25);
  EXPECT_EQ(a.noise, 0.0);
  auto codes = parse_augments("Ro,Cr,Re,Et,Ts");
  EXPECT_EQ(codes.rotation + codes.crop + codes.resized_crop + codes.elastic + codes.thin_plate, 5.0);
  EXPECT_EQ(codes.flip, 0.0);
  EXPECT_THROW(parse_augments("flip,warp"), Error);
  EXPECT_THROW(parse_augments("flip:2"), Error);
  EXPECT_THROW(parse_augments("flip:x"), Error);
  EXPECT_EQ(parse_cut_method("latest"), CutMethod::kLatest);
  EXPECT_THROW(parse_cut_method("square"), Error);
  EXPECT_THROW(Cutouts({.cutn = 0}, no_augment()), std::exception);
  EXPECT_THROW(Cutouts({.padding = "wrap"}, no_augment()), Error);
}

}  // namespace
}  // namespace clipguide::guidance
