// The "primitives" generator (see primitives.h): soft superellipses composited over a flat background.
// Shapes: B batch, K primitives, H x W image.
#include "generators/primitives.h"

#include "core/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/atanh.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/full.h>
#include <ATen/ops/log.h>
#include <ATen/ops/logit.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/tanh.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>

#include <ATen/ops/randint.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace clipguide::generators {

namespace {

constexpr double kEps = 1e-3;          // colours are clamped to [kEps, 1 - kEps] before a logit
constexpr double kMaxCentreRaw = 3.0;  // tanh(3) = 0.995: beyond it the centre's gradient vanishes
constexpr double kFitLearningRate = 0.05;

// Superellipse exponent p = 1 + 7 sigmoid(roundness): 1 a diamond, 2 an ellipse, towards 8 a rounded box.
constexpr double kMinExponent = 1.0;
constexpr double kExponentRange = 7.0;

// A random start's logit for the kind it favours (the others 0): softmax weight 0.77 among 7 kinds.
constexpr double kFavouredKindLogit = 3.0;

// Signed distances (negative inside) in units of the circumradius, in the shape's own frame (y down).
at::Tensor length(const at::Tensor& x, const at::Tensor& y) { return at::sqrt(x * x + y * y + 1e-12); }

at::Tensor box_sdf(const at::Tensor& u, const at::Tensor& v, double bx, double by) {
  auto qx = u.abs() - bx, qy = v.abs() - by;
  return length(qx.clamp_min(0), qy.clamp_min(0)) + at::maximum(qx, qy).clamp_max(0);
}

// Vertices of a regular polygon (inner 1) or star (inner < 1) on the unit circle, the first at the top.
std::vector<std::array<double, 2>> polygon(int n, double inner) {
  std::vector<std::array<double, 2>> pts;
  const int steps = inner < 1 ? 2 * n : n;
  for (int k = 0; k < steps; ++k) {
    const double a = -M_PI / 2 + 2 * M_PI * k / steps, r = (inner < 1 && k % 2 == 1) ? inner : 1.0;
    pts.push_back({r * std::cos(a), r * std::sin(a)});
  }
  return pts;
}

// Exact signed distance to a closed polygon: the nearest edge's distance, negative where the crossing
// number is odd (the sign carries no gradient).
at::Tensor polygon_sdf(const std::vector<std::array<double, 2>>& pts, const at::Tensor& u, const at::Tensor& v) {
  at::Tensor dist2, inside;
  {
    at::NoGradGuard no_grad;
    inside = at::zeros(u.sizes(), u.options().dtype(at::kBool));
  }
  for (size_t i = 0, j = pts.size() - 1; i < pts.size(); j = i++) {
    const double xi = pts[i][0], yi = pts[i][1], xj = pts[j][0], yj = pts[j][1];
    const double ex = xi - xj, ey = yi - yj;
    auto wx = u - xj, wy = v - yj;
    auto h = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0, 1);
    auto dx = wx - h * ex, dy = wy - h * ey;
    auto d2 = dx * dx + dy * dy;
    dist2 = dist2.defined() ? at::minimum(dist2, d2) : d2;
    if (yi != yj) {
      at::NoGradGuard no_grad;
      auto uu = u.detach(), vv = v.detach();
      inside = inside.logical_xor((vv < yi).logical_xor(vv < yj).logical_and(uu < (vv - yi) * (ex / ey) + xi));
    }
  }
  auto d = at::sqrt(dist2 + 1e-12);
  return at::where(inside, -d, d);
}

// Normalised coordinates of the pixel centres along one side of `length` pixels: the shorter side spans [-1, 1].
at::Tensor axis(int64_t length, int64_t shorter, c10::Device device) {
  auto index = at::arange(length, at::TensorOptions().dtype(at::kFloat).device(device));
  return (index + 0.5 - length / 2.0) / (shorter / 2.0);
}

// Keeps the parameters within PrimitivesOptions' bounds: the aspect ratio first (about the geometric mean
// size), then each half-size.
void clamp_constrained(const TensorMap& params, const PrimitivesOptions& options) {
  at::NoGradGuard no_grad;
  auto log_size = params.at("log_size");  // (B, K, 2)
  auto mean = log_size.mean(-1, /*keepdim=*/true);
  const double half_log_aspect = std::log(options.max_aspect) / 2;
  log_size.copy_(mean + (log_size - mean).clamp(-half_log_aspect, half_log_aspect));
  log_size.clamp_(std::log(options.min_size), std::log(options.max_size));
  params.at("centre").clamp_(-kMaxCentreRaw, kMaxCentreRaw);
  if (options.max_angle > 0) params.at("angle").clamp_(-options.max_angle, options.max_angle);
}

}  // namespace

PrimitivesOptions PrimitivesOptions::from_extra(const std::map<std::string, std::string>& extra) {
  PrimitivesOptions options;
  const double count = extra_number(extra, "count", static_cast<double>(options.count), "primitives");
  const double fit_steps = extra_number(extra, "fit_steps", static_cast<double>(options.fit_steps), "primitives");
  options.edge = extra_number(extra, "edge", options.edge, "primitives");
  options.min_size = extra_number(extra, "min_size", options.min_size, "primitives");
  options.max_size = extra_number(extra, "max_size", options.max_size, "primitives");
  options.max_aspect = extra_number(extra, "max_aspect", options.max_aspect, "primitives");
  options.max_offset = extra_number(extra, "max_offset", options.max_offset, "primitives");
  options.max_angle = extra_number(extra, "max_angle", options.max_angle, "primitives");
  if (count != std::floor(count) || count < 1 || count > 64) {
    throw Error("primitives generator: extra[\"count\"] must be a whole number in 1..64; got " + extra.at("count"));
  }
  if (fit_steps != std::floor(fit_steps) || fit_steps < 0 || fit_steps > 100000) {
    throw Error("primitives generator: extra[\"fit_steps\"] must be a whole number in 0..100000; got " +
                extra.at("fit_steps"));
  }
  if (!(options.edge > 0 && options.edge <= 1)) {
    throw Error("primitives generator: extra[\"edge\"] must be in (0, 1]; got " + extra.at("edge"));
  }
  if (!(options.min_size > 0 && options.max_size >= options.min_size)) {
    throw Error("primitives generator: need 0 < extra[\"min_size\"] <= extra[\"max_size\"]; got " +
                std::to_string(options.min_size) + " and " + std::to_string(options.max_size));
  }
  if (!(options.max_aspect >= 1)) {
    throw Error("primitives generator: extra[\"max_aspect\"] must be >= 1; got " + std::to_string(options.max_aspect));
  }
  if (!(options.max_angle >= 0 && options.max_angle <= M_PI)) {
    throw Error("primitives generator: extra[\"max_angle\"] must be in [0, pi]; got " + std::to_string(options.max_angle));
  }
  if (!(options.max_offset > 0 && options.max_offset <= 2)) {
    throw Error("primitives generator: extra[\"max_offset\"] must be in (0, 2]; got " + std::to_string(options.max_offset));
  }
  options.count = static_cast<int64_t>(count);
  options.fit_steps = static_cast<int64_t>(fit_steps);
  if (auto it = extra.find("kinds"); it != extra.end()) {
    const auto& known = PrimitivesGenerator::kind_names();
    options.kinds.clear();
    if (it->second == "all") options.kinds.assign(known.begin() + 1, known.end());  // every named kind
    for (size_t begin = 0; it->second != "all" && begin <= it->second.size();) {
      const size_t end = std::min(it->second.find('+', begin), it->second.size());
      const std::string kind = it->second.substr(begin, end - begin);
      if (std::find(known.begin(), known.end(), kind) == known.end()) {
        throw Error("primitives generator: extra[\"kinds\"]: '" + kind + "' in '" + it->second +
                    "' is not one of superellipse, circle, square, triangle, star, diamond, hexagon, cross, all");
      }
      if (std::find(options.kinds.begin(), options.kinds.end(), kind) != options.kinds.end()) {
        throw Error("primitives generator: extra[\"kinds\"]: '" + kind + "' is named twice in '" + it->second + "'");
      }
      options.kinds.push_back(kind);
      begin = end + 1;
    }
  }
  return options;
}

const std::vector<std::string>& PrimitivesGenerator::parameter_names() {
  static const std::vector<std::string> names = {"background", "centre",  "log_size", "angle",
                                                 "roundness",  "colour", "opacity"};
  return names;
}

const std::vector<std::string>& PrimitivesGenerator::kind_names() {
  static const std::vector<std::string> names = {"superellipse", "circle",  "square",  "triangle",
                                                 "star",         "diamond", "hexagon", "cross"};
  return names;
}

std::vector<std::string> PrimitivesGenerator::names() const {
  std::vector<std::string> out;
  const bool superellipse = std::find(options_.kinds.begin(), options_.kinds.end(), "superellipse") != options_.kinds.end();
  for (const auto& name : parameter_names())
    if (name != "roundness" || superellipse) out.push_back(name);
  if (mixed()) out.push_back("kind");
  return out;
}

PrimitivesGenerator::PrimitivesGenerator(const GeneratorOptions& options)
    : options_(PrimitivesOptions::from_extra(options.extra)),
      batch_(options.batch),
      height_(options.height),
      width_(options.width),
      seed_(options.seed),
      device_(options.device),
      latent_("primitives generator", options.device) {
  check_image_size(options, "primitives");
  const int64_t shorter = std::min(height_, width_);
  grid_x_ = axis(width_, shorter, device_).view({1, 1, 1, width_});
  grid_y_ = axis(height_, shorter, device_).view({1, 1, height_, 1});
  init_random(seed_);
}

std::vector<at::Tensor> PrimitivesGenerator::parameters() {
  std::vector<at::Tensor> out;
  for (const auto& name : names()) out.push_back(latent_.at(name));
  return out;
}

at::Tensor PrimitivesGenerator::render() { return render_params(latent_.tensors()); }

at::Tensor PrimitivesGenerator::render_params(const TensorMap& p) const {
  const int64_t shorter = std::min(height_, width_);
  const double extent_x = options_.max_offset * width_ / shorter, extent_y = options_.max_offset * height_ / shorter;
  auto centre = at::tanh(p.at("centre"));                       // (B, K, 2) in (-1, 1)
  auto cx = (centre.select(2, 0) * extent_x).unsqueeze(-1).unsqueeze(-1);  // (B, K, 1, 1)
  auto cy = (centre.select(2, 1) * extent_y).unsqueeze(-1).unsqueeze(-1);
  auto size = at::exp(p.at("log_size"));                        // (B, K, 2) half-sizes
  auto sx = size.select(2, 0).unsqueeze(-1).unsqueeze(-1);      // (B, K, 1, 1)
  auto sy = size.select(2, 1).unsqueeze(-1).unsqueeze(-1);
  auto angle = p.at("angle").unsqueeze(-1).unsqueeze(-1);       // (B, K, 1, 1)
  auto cos_a = at::cos(angle), sin_a = at::sin(angle);
  auto dx = grid_x_ - cx, dy = grid_y_ - cy;                    // (B, K, H, W)
  auto u = (cos_a * dx + sin_a * dy) / sx;                      // in the primitive's own frame, 1 at its edge
  auto v = (cos_a * dy - sin_a * dx) / sy;
  auto scale = at::minimum(sx, sy);                             // frame units -> normalised units
  at::Tensor cover;                                             // (B, K, H, W)
  if (!mixed()) {
    cover = coverage(options_.kinds[0], u, v, scale, p);
  } else {
    // Each shape is drawn as its most likely kind (a crisp shape, never a ghostly blend); the kind logits
    // learn through the softmax mixture of every kind's (fixed) coverage: a straight-through estimator.
    const at::Tensor logits = p.at("kind");                      // (B, K, N)
    const at::Tensor weights = at::softmax(logits, -1);
    const at::Tensor chosen = at::argmax(logits.detach(), -1);  // (B, K)
    at::Tensor soft;
    for (size_t n = 0; n < options_.kinds.size(); ++n) {
      const at::Tensor c = coverage(options_.kinds[n], u, v, scale, p);  // (B, K, H, W)
      const at::Tensor is_chosen = chosen.eq(static_cast<int64_t>(n)).to(c.scalar_type()).unsqueeze(-1).unsqueeze(-1);
      const at::Tensor blended = weights.select(2, static_cast<int64_t>(n)).unsqueeze(-1).unsqueeze(-1) * c.detach();
      cover = cover.defined() ? cover + is_chosen * c : is_chosen * c;
      soft = soft.defined() ? soft + blended : blended;
    }
    cover = cover + (soft - soft.detach());
  }
  auto alpha = cover * at::sigmoid(p.at("opacity")).unsqueeze(-1).unsqueeze(-1);  // (B, K, H, W)
  auto colour = at::sigmoid(p.at("colour")).unsqueeze(-1).unsqueeze(-1);  // (B, K, 3, 1, 1)
  auto image = at::sigmoid(p.at("background")).unsqueeze(-1).unsqueeze(-1).expand({batch_, 3, height_, width_});
  for (int64_t k = 0; k < options_.count; ++k) {  // back to front
    auto a = alpha.select(1, k).unsqueeze(1);     // (B, 1, H, W)
    image = image * (1 - a) + colour.select(1, k) * a;
  }
  return image;  // (B, 3, H, W)
}

at::Tensor PrimitivesGenerator::coverage(const std::string& kind, const at::Tensor& u, const at::Tensor& v,
                                         const at::Tensor& scale, const TensorMap& p) const {
  if (kind == "superellipse") {
    auto exponent = (kMinExponent + kExponentRange * at::sigmoid(p.at("roundness"))).unsqueeze(-1).unsqueeze(-1);
    // d = (|u|^p + |v|^p)^(1/p), computed as m ((|u|/m)^p + (|v|/m)^p)^(1/p) so that large p cannot overflow.
    auto au = u.abs(), av = v.abs();
    auto m = at::maximum(au, av) + 1e-6;
    auto d = m * at::pow(at::pow((au / m).clamp_min(1e-6), exponent) + at::pow((av / m).clamp_min(1e-6), exponent),
                         1.0 / exponent);
    // (1 - d) times the smaller half-size is about the distance inside the edge, in normalised units.
    return at::sigmoid((1 - d) * scale / options_.edge);
  }
  static const auto triangle = polygon(3, 1), star = polygon(5, 0.45), hexagon = polygon(6, 1);
  at::Tensor sdf;  // the shapes world's geometry (clipnet/train/shapes_world.cpp), circumradius 1
  if (kind == "circle") sdf = length(u, v) - 1;
  else if (kind == "square") sdf = box_sdf(u, v, 0.7, 0.7);
  else if (kind == "triangle") sdf = polygon_sdf(triangle, u, v);
  else if (kind == "star") sdf = polygon_sdf(star, u, v);
  else if (kind == "diamond") sdf = (u.abs() + v.abs() - 1) / std::sqrt(2.0);
  else if (kind == "hexagon") sdf = polygon_sdf(hexagon, u, v);
  else sdf = at::minimum(box_sdf(u, v, 0.3, 0.95), box_sdf(u, v, 0.95, 0.3));  // cross
  return at::sigmoid(-sdf * scale / options_.edge);
}

void PrimitivesGenerator::init_random(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto f = at::TensorOptions().dtype(at::kFloat);
  const int64_t b = batch_, k = options_.count;
  auto uniform = [&](std::vector<int64_t> shape, double lo, double hi) {
    return at::rand(shape, gen, f) * (hi - lo) + lo;
  };
  set({{"background", uniform({b, 3}, -2, 2)},
       {"centre", at::atanh(uniform({b, k, 2}, -0.5, 0.5))},
       {"log_size", at::log(uniform({b, k, 2}, 0.2, 0.45))},
       {"angle", uniform({b, k}, -0.3, 0.3)},
       {"roundness", uniform({b, k}, -3, 3)},  // from near a diamond (p 1.3) to a rounded box (p 7.7)
       {"colour", uniform({b, k, 3}, -2, 2)},
       {"opacity", at::full({b, k}, 3.0, f)}});
  if (mixed()) {  // each shape favours one kind
    const int64_t n = static_cast<int64_t>(options_.kinds.size());
    auto favoured = at::randint(n, {b, k, 1}, gen, at::TensorOptions().dtype(at::kLong));
    set({{"kind", at::zeros({b, k, n}, f).scatter_(2, favoured, kFavouredKindLogit)}});
  }
}

void PrimitivesGenerator::init_from_image(const at::Tensor& image) {
  const at::Tensor target =  // (B, 3, H, W) in [0, 1]
      init_image_to_size(image, batch_, height_, width_, device_, "primitives").clamp(0, 1).expand({batch_, -1, -1, -1});
  TensorMap fit;
  {
    at::NoGradGuard no_grad;
    init_random(seed_);
    for (const auto& [name, value] : latent_.tensors()) fit[name] = value.detach().clone().set_requires_grad(true);
    fit["background"].copy_(at::logit(target.mean({2, 3}).clamp(kEps, 1 - kEps)));  // (B, 3)
  }
  at::AutoGradMode enable_grad(true);
  std::vector<at::Tensor> leaves;
  for (const auto& name : names()) leaves.push_back(fit.at(name));
  torch::optim::Adam adam(leaves, torch::optim::AdamOptions(kFitLearningRate));
  for (int64_t step = 0; step < options_.fit_steps; ++step) {
    adam.zero_grad();
    at::mse_loss(render_params(fit), target).backward();
    adam.step();
    clamp_constrained(fit, options_);
  }
  set(fit);
}

void PrimitivesGenerator::post_step() { clamp_constrained(latent_.tensors(), options_); }

void PrimitivesGenerator::load_state(const TensorMap& state) {
  latent_.load(state);
  clamp_constrained(latent_.tensors(), options_);
}

void PrimitivesGenerator::set(const TensorMap& values) {
  for (const auto& name : names()) {
    if (values.count(name)) latent_.set(name, values.at(name));  // init_random sets "kind" in a second call
  }
  clamp_constrained(latent_.tensors(), options_);
}

CLIPGUIDE_REGISTER_GENERATOR("primitives", PrimitivesGenerator);

}  // namespace clipguide::generators
