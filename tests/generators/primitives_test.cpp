// Tests for the "primitives" generator (generators/primitives.cpp): rendered areas against the superellipse
// area formula, position and rotation, gradients, init_from_image, seeds, state and bad settings.
// Shapes: B batch, K primitives, H x W image.
#include "core/error.h"
#include "generators/generator.h"
#include "generators/primitives.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace clipguide::generators {
namespace {

using test::error_of;

GeneratorOptions options_for(int64_t height, int64_t width, int64_t batch = 1, int64_t count = 1,
                             uint64_t seed = 3) {
  GeneratorOptions options;
  options.height = height;
  options.width = width;
  options.batch = batch;
  options.seed = seed;
  options.extra = {{"count", std::to_string(count)}};
  return options;
}

// One white primitive on black: centre (x, y) in normalised units, half-sizes (sx, sy), angle, exponent p.
TensorMap one_shape(double x, double y, double sx, double sy, double angle, double p, double extent_x = 1,
                    double extent_y = 1) {
  const double roundness = std::log((p - 1) / (8 - p));  // p = 1 + 7 sigmoid(roundness)
  return {{"background", at::full({1, 3}, -12.0)},
          {"centre", at::atanh(at::tensor({x / extent_x, y / extent_y}).view({1, 1, 2}))},
          {"log_size", at::log(at::tensor({sx, sy}).view({1, 1, 2}))},
          {"angle", at::full({1, 1}, angle)},
          {"roundness", at::full({1, 1}, roundness)},
          {"colour", at::full({1, 1, 3}, 12.0)},
          {"opacity", at::full({1, 1}, 12.0)}};
}

// Area of |u/a|^p + |v/b|^p <= 1: 4 a b Gamma(1 + 1/p)^2 / Gamma(1 + 2/p).
double superellipse_area(double a, double b, double p) {
  return 4 * a * b * std::pow(std::tgamma(1 + 1 / p), 2) / std::tgamma(1 + 2 / p);
}

TEST(PrimitivesGenerator, RegisteredRendersInUnitRange) {
  auto names = GeneratorRegistry::names();
  EXPECT_NE(std::find(names.begin(), names.end(), "primitives"), names.end());
  auto generator = GeneratorRegistry::create("primitives", options_for(12, 20, 2, 3));
  EXPECT_EQ(generator->name(), "primitives");
  EXPECT_EQ(generator->latent_shape(), (std::vector<int64_t>{2, 3, PrimitivesGenerator::kValuesPerPrimitive}));
  EXPECT_EQ(generator->parameters().size(), PrimitivesGenerator::parameter_names().size());
  auto image = generator->render();  // (2, 3, 12, 20)
  EXPECT_EQ(image.sizes().vec(), (std::vector<int64_t>{2, 3, 12, 20}));
  EXPECT_GE(image.min().item<float>(), 0.0f);
  EXPECT_LE(image.max().item<float>(), 1.0f);
  EXPECT_GT(image.std().item<float>(), 0.01f) << "a random start shows its shapes";
}

// The covered fraction of a square image is the superellipse's area over the image's (4 normalised units^2),
// from a diamond (p = 1) through a circle (p = 2) to a rounded box (p = 7.5). The soft edge adds a known
// amount: d is homogeneous of degree 1, so {d <= t} has area A t^2 and the coverage is
// A * integral of sigmoid((1 - t) / w) d(t^2) = A (1 + pi^2 w^2 / 3), w = edge / min(sx, sy) = 0.1.
// 128 px: 0.001 tolerance (pixel sampling).
TEST(PrimitivesGenerator, CoveredAreaMatchesTheSuperellipseFormula) {
  PrimitivesGenerator generator(options_for(128, 128));
  const double w = PrimitivesOptions{}.edge / 0.3;
  for (double p : {1.0001, 2.0, 4.0, 7.5}) {
    for (double angle : {0.0, 0.4}) {
      generator.load_state(one_shape(0.1, -0.2, 0.5, 0.3, angle, p));
      const double covered = generator.render().mean().item<double>();
      const double expected = superellipse_area(0.5, 0.3, p) / 4 * (1 + M_PI * M_PI * w * w / 3);
      std::printf("p %.1f angle %.1f: covered %.5f, formula %.5f\n", p, angle, covered, expected);
      EXPECT_NEAR(covered, expected, 1e-3) << "p " << p << " angle " << angle;
    }
  }
}

// Centroid at the centre, in pixels, on a wide image (the shorter side spans [-1, 1], so x spans [-2, 2]);
// with max_offset 0.5 the same raw centre lands half as far out.
TEST(PrimitivesGenerator, ShapeSitsAtItsCentre) {
  const int64_t h = 32, w = 64;
  for (double max_offset : {1.0, 0.5}) {
    SCOPED_TRACE("max_offset " + std::to_string(max_offset));
    auto options = options_for(h, w);
    options.extra["max_offset"] = std::to_string(max_offset);
    PrimitivesGenerator generator(options);
    generator.load_state(one_shape(0.9, -0.4, 0.2, 0.2, 0, 2, /*extent_x=*/2 * max_offset, /*extent_y=*/max_offset));
    auto mask = generator.render()[0][0];  // (H, W)
    auto ys = at::arange(h, at::kFloat).view({h, 1}) + 0.5, xs = at::arange(w, at::kFloat).view({1, w}) + 0.5;
    const double total = mask.sum().item<double>();
    const double cx = (mask * xs).sum().item<double>() / total, cy = (mask * ys).sum().item<double>() / total;
    EXPECT_NEAR(cx, w / 2.0 + 0.9 * h / 2.0, 0.05);  // 16 pixels per normalised unit
    EXPECT_NEAR(cy, h / 2.0 - 0.4 * h / 2.0, 0.05);
  }
}

// A box rotated by 90 degrees is the transposed box.
TEST(PrimitivesGenerator, RotationByAQuarterTurnTransposes) {
  PrimitivesGenerator generator(options_for(48, 48));
  generator.load_state(one_shape(0, 0, 0.6, 0.2, 0, 6));
  auto flat = generator.render()[0][0];
  generator.load_state(one_shape(0, 0, 0.6, 0.2, M_PI / 2, 6));
  auto turned = generator.render()[0][0];
  EXPECT_TENSOR_CLOSE(turned, flat.t(), 1e-4, 0);
  EXPECT_GT((turned - flat).abs().max().item<float>(), 0.9f);
}

// Later primitives cover earlier ones; opacity mixes.
TEST(PrimitivesGenerator, CompositesBackToFront) {
  auto options = options_for(16, 16, 1, 2);
  PrimitivesGenerator generator(options);
  auto state = generator.state();
  state["centre"].zero_();
  state["log_size"].fill_(std::log(0.5));
  state["colour"] = at::tensor({12.f, -12.f, -12.f, -12.f, 12.f, -12.f}).view({1, 2, 3});  // red, then green
  state["opacity"].fill_(12);
  generator.load_state(state);
  auto centre = generator.render().index({0, at::indexing::Slice(), 8, 8});  // (3)
  EXPECT_TENSOR_CLOSE(centre, at::tensor({0.f, 1.f, 0.f}), 1e-3, 0);
  state["opacity"] = at::tensor({12.f, 0.f}).view({1, 2});  // green at half opacity over red
  generator.load_state(state);
  centre = generator.render().index({0, at::indexing::Slice(), 8, 8});
  EXPECT_TENSOR_CLOSE(centre, at::tensor({0.5f, 0.5f, 0.f}), 1e-3, 0);
}

TEST(PrimitivesGenerator, EveryParameterGetsAGradient) {
  PrimitivesGenerator generator(options_for(24, 24, 2, 2));
  auto image = generator.render();
  (image * at::linspace(0, 1, 24).view({1, 1, 1, 24})).sum().backward();
  const auto params = generator.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    SCOPED_TRACE(PrimitivesGenerator::parameter_names()[i]);
    ASSERT_TRUE(params[i].grad().defined());
    EXPECT_TRUE(params[i].grad().isfinite().all().item<bool>());
    EXPECT_GT(params[i].grad().abs().sum().item<double>(), 0);
  }
}

// An image made of two primitives is refitted from another seed's start: the error falls far below the
// start's and below 1e-3 mean squared.
TEST(PrimitivesGenerator, InitFromImageFitsAnImageOfPrimitives) {
  auto options = options_for(32, 32, 1, 2, /*seed=*/1);
  PrimitivesGenerator truth(options);
  auto target = truth.render().detach();  // (1, 3, 32, 32)
  options.seed = 2;
  options.extra["fit_steps"] = "300";
  PrimitivesGenerator generator(options);
  const double before = (generator.render() - target).pow(2).mean().item<double>();
  generator.init_from_image(target);
  const double after = (generator.render() - target).pow(2).mean().item<double>();
  std::printf("fit: mse %.5f -> %.5f\n", before, after);
  EXPECT_LT(after, 1e-3);
  EXPECT_LT(after, before / 10);
  // The fitted parameters are still the leaves an optimiser holds, without stale gradients.
  for (const auto& p : generator.parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
  // Resized input and a wrong shape.
  generator.init_from_image(at::rand({1, 3, 20, 28}));
  EXPECT_NE(error_of([&] { generator.init_from_image(at::rand({3, 20, 28})); }).find("init image must be"),
            std::string::npos);
}

TEST(PrimitivesGenerator, SeedsAndStateRoundTrip) {
  PrimitivesGenerator a(options_for(16, 16, 1, 3, 5)), b(options_for(16, 16, 1, 3, 5)), c(options_for(16, 16, 1, 3, 6));
  EXPECT_TRUE(a.render().equal(b.render()));
  EXPECT_FALSE(a.render().equal(c.render()));
  c.load_state(a.state());
  EXPECT_TRUE(c.render().equal(a.render()));

  auto state = a.state();
  state.erase("angle");
  EXPECT_NE(error_of([&] { c.load_state(state); }).find("no 'angle' tensor"), std::string::npos);
  state = a.state();
  state["colour"] = at::zeros({1, 2, 3});
  EXPECT_NE(error_of([&] { c.load_state(state); }).find("'colour': got [1, 2, 3], expected [1, 3, 3]"),
            std::string::npos);
}

TEST(PrimitivesGenerator, PostStepKeepsSizesInRange) {
  PrimitivesGenerator generator(options_for(16, 16));
  auto state = generator.state();
  state["log_size"].fill_(-20);
  generator.load_state(state);
  EXPECT_NEAR(generator.state().at("log_size").min().item<double>(), std::log(0.02), 1e-6);
  {
    at::NoGradGuard no_grad;
    generator.parameters()[2].fill_(10);  // log_size, as an optimiser step might leave it
  }
  generator.post_step();
  EXPECT_NEAR(generator.state().at("log_size").max().item<double>(), std::log(2.0), 1e-6);

  // Tighter bounds: sizes within [0.1, 0.5], at most twice as long as wide (about the geometric mean).
  auto options = options_for(16, 16, 1, 2);
  options.extra.insert({{"min_size", "0.1"}, {"max_size", "0.5"}, {"max_aspect", "2"}});
  PrimitivesGenerator bounded(options);
  {
    at::NoGradGuard no_grad;
    bounded.parameters()[2].copy_(at::log(at::tensor({0.05f, 0.8f, 0.3f, 0.3f}).view({1, 2, 2})));
  }
  bounded.post_step();
  auto size = at::exp(bounded.state().at("log_size")).view({4});
  // 0.05 x 0.8 (geometric mean 0.2): aspect 16 -> 2 about 0.2, i.e. 0.1414 x 0.2828; the square one stays.
  EXPECT_TENSOR_CLOSE(size, at::tensor({0.2f / std::sqrt(2.f), 0.2f * std::sqrt(2.f), 0.3f, 0.3f}), 1e-5, 0);
}

TEST(PrimitivesGenerator, BadSettingsNameTheKey) {
  for (const auto& [key, value, expected] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"count", "0", "extra[\"count\"] must be a whole number in 1..64; got 0"},
           {"count", "2.5", "extra[\"count\"] must be a whole number"},
           {"count", "many", "extra[\"count\"] = 'many' is not a finite number"},
           {"edge", "0", "extra[\"edge\"] must be in (0, 1]"},
           {"fit_steps", "-1", "extra[\"fit_steps\"] must be a whole number"},
           {"min_size", "0", "need 0 < extra[\"min_size\"] <= extra[\"max_size\"]"},
           {"max_size", "0.01", "need 0 < extra[\"min_size\"] <= extra[\"max_size\"]"},
           {"max_aspect", "0.5", "extra[\"max_aspect\"] must be >= 1"},
           {"max_offset", "0", "extra[\"max_offset\"] must be in (0, 2]"},
           {"max_angle", "4", "extra[\"max_angle\"] must be in [0, pi]"},
           {"kinds", "circle+oval", "extra[\"kinds\"]: 'oval' in 'circle+oval' is not one of"},
           {"kinds", "star+star", "extra[\"kinds\"]: 'star' is named twice"},
           {"kinds", "", "extra[\"kinds\"]: '' in '' is not one of"}}) {
    SCOPED_TRACE(key + "=" + value);
    auto options = options_for(8, 8);
    options.extra[key] = value;
    const auto message = error_of([&] { PrimitivesGenerator generator(options); });
    EXPECT_NE(message.find("primitives generator: " + expected), std::string::npos) << message;
  }
  auto options = options_for(0, 8);
  EXPECT_NE(error_of([&] { PrimitivesGenerator generator(options); }).find("need batch, width and height >= 1"),
            std::string::npos);
}

// A named kind of circumradius r covers its exact area: circle pi r^2, square (1.4 r)^2, triangle
// 3 sqrt(3)/4 r^2, star 5 r r_i sin(36 deg) (inner radius r_i = 0.45 r), diamond 2 r^2, hexagon 3 sqrt(3)/2 r^2,
// cross 2 (0.6 r)(1.9 r) - (0.6 r)^2. The soft edge is symmetric about the outline, so it shifts the area only
// at second order (and at the star's and cross's reflex corners): 1% tolerance at 256 px, edge 0.01.
TEST(PrimitivesGenerator, NamedKindsCoverTheirArea) {
  const double r = 0.5;
  const std::map<std::string, double> area = {
      {"circle", M_PI * r * r},
      {"square", 1.96 * r * r},
      {"triangle", 3 * std::sqrt(3.0) / 4 * r * r},
      {"star", 5 * r * 0.45 * r * std::sin(M_PI / 5)},
      {"diamond", 2 * r * r},
      {"hexagon", 3 * std::sqrt(3.0) / 2 * r * r},
      {"cross", 2 * 0.6 * 1.9 * r * r - 0.36 * r * r}};
  for (const auto& [kind, expected] : area) {
    auto options = options_for(256, 256);
    options.extra["kinds"] = kind;
    options.extra["edge"] = "0.01";
    PrimitivesGenerator generator(options);
    generator.load_state(one_shape(0.1, -0.2, r, r, 0, 2));
    const double covered = generator.render().mean().item<double>() * 4;  // the image is 4 normalised units^2
    std::printf("%s: covered %.5f, exact %.5f\n", kind.c_str(), covered, expected);
    EXPECT_NEAR(covered / expected, 1.0, 0.01) << kind;
  }
}

// Upright as the shapes world draws them (a vertex up, y down): a triangle has less area above its centre
// than below (0.577 against 0.722 of r^2), a star more (three of its five points are above), a hexagon is
// taller than wide (2 r against sqrt(3) r), and a cross is symmetric under a quarter turn.
TEST(PrimitivesGenerator, NamedKindsAreUpright) {
  for (const std::string kind : {"triangle", "star", "cross", "hexagon"}) {
    auto options = options_for(64, 64);
    options.extra["kinds"] = kind;
    PrimitivesGenerator generator(options);
    generator.load_state(one_shape(0, 0, 0.8, 0.8, 0, 2));
    auto mask = generator.render()[0][0];  // (H, W)
    const double top = mask.narrow(0, 0, 32).sum().item<double>(), bottom = mask.narrow(0, 32, 32).sum().item<double>();
    const double height = std::get<0>(mask.max(1)).sum().item<double>(), width = std::get<0>(mask.max(0)).sum().item<double>();
    if (kind == "triangle") EXPECT_NEAR(top / bottom, 0.577 / 0.722, 0.03);
    if (kind == "star") EXPECT_GT(top, 1.1 * bottom);
    if (kind == "hexagon") EXPECT_NEAR(height / width, 2 / std::sqrt(3.0), 0.05);
    if (kind == "cross") EXPECT_TENSOR_CLOSE(mask, mask.t(), 1e-4, 0);
  }
}

// Several kinds: the "kind" logits choose among them; a decided mixture renders as that kind alone, every
// parameter including "kind" gets a gradient, the state carries "kind", and the latent shape counts it.
TEST(PrimitivesGenerator, KindMixtureChoosesAmongKinds) {
  auto options = options_for(32, 32, 2, 1);
  options.extra["kinds"] = "circle+square+star";
  PrimitivesGenerator mixed(options);
  EXPECT_EQ(mixed.latent_shape(), (std::vector<int64_t>{2, 1, PrimitivesGenerator::kValuesPerPrimitive + 3}));
  ASSERT_EQ(mixed.parameters().size(), PrimitivesGenerator::parameter_names().size());  // no roundness, + kind
  auto weights = at::softmax(mixed.state().at("kind"), -1);  // (2, 1, 3): each start favours one kind
  EXPECT_GT(weights.max().item<double>(), 0.7);

  auto state = one_shape(0.1, 0.1, 0.5, 0.5, 0, 2);
  for (auto& [name, value] : state) {  // the one shape in both images of the batch
    auto sizes = value.sizes().vec();
    sizes[0] = 2;
    value = value.expand(sizes).contiguous();
  }
  state["kind"] = at::tensor({-20.f, -20.f, 20.f, 20.f, -20.f, -20.f}).view({2, 1, 3});  // star, circle
  mixed.load_state(state);
  auto image = mixed.render();
  for (const auto& [b, kind] : std::vector<std::pair<int64_t, std::string>>{{0, "star"}, {1, "circle"}}) {
    auto single_options = options_for(32, 32, 2, 1);
    single_options.extra["kinds"] = kind;
    PrimitivesGenerator single(single_options);
    auto single_state = state;
    single_state.erase("kind");
    single.load_state(single_state);
    EXPECT_TENSOR_CLOSE(image[b], single.render()[b], 1e-5, 0);
  }
  state["kind"] = at::zeros({2, 1, 3});
  mixed.load_state(state);
  (mixed.render() * at::linspace(0, 1, 32).view({1, 1, 1, 32})).sum().backward();
  for (const auto& p : mixed.parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_TRUE(p.grad().isfinite().all().item<bool>());
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
  }
  auto missing = mixed.state();
  missing.erase("kind");
  EXPECT_NE(error_of([&] { mixed.load_state(missing); }).find("no 'kind' tensor"), std::string::npos);
}

// max_angle bounds the rotation after each step.
TEST(PrimitivesGenerator, MaxAngleBoundsTheTurn) {
  auto options = options_for(16, 16);
  options.extra["max_angle"] = "0.2";
  PrimitivesGenerator generator(options);
  {
    at::NoGradGuard no_grad;
    generator.parameters()[3].fill_(1.0);  // angle
  }
  generator.post_step();
  EXPECT_NEAR(generator.state().at("angle").item<double>(), 0.2, 1e-6);
}

}  // namespace
}  // namespace clipguide::generators
