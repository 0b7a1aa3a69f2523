// Batched cutouts and augmentations (see cutouts.h).
// ref: nerdyrodent/VQGAN-CLIP generate.py (MakeCutouts, MakeCutoutsOrig, augment list codes);
//      Disco Diffusion v5 MakeCutoutsDango (overview + inner cuts).
#include "guidance/cutouts.h"

#include "clipnet/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/adaptive_max_pool2d.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/einsum.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/linalg_inv.h>
#include <ATen/ops/grid_sampler.h>
#include <ATen/ops/linalg_solve.h>
#include <ATen/ops/meshgrid.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace clipguide::guidance {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Uniform (n,) doubles in [lo, hi) from gen.
at::Tensor uniform(at::Generator& gen, int64_t n, double lo, double hi) {
  return at::rand({n}, gen, at::kDouble) * (hi - lo) + lo;
}
at::Tensor coin(at::Generator& gen, int64_t n, double p) { return at::rand({n}, gen, at::kDouble).lt(p); }

// (n, 3, 3) from per-element (n,) entries, row-major.
at::Tensor matrices(const std::vector<at::Tensor>& e) { return at::stack(e, 1).view({-1, 3, 3}); }

// Affine (n, 3, 3): rotation, anisotropic shear, scale and translation, each per cutout.
at::Tensor affine_matrices(const at::Tensor& theta, const at::Tensor& shear, const at::Tensor& scale,
                           const at::Tensor& tx, const at::Tensor& ty) {
  auto c = theta.cos(), s = theta.sin(), k = shear.tan();
  auto z = at::zeros_like(theta), o = at::ones_like(theta);
  // R(theta) @ [[1, k], [0, 1]] / scale, then translate.
  return matrices({c / scale, (c * k - s) / scale, tx, s / scale, (s * k + c) / scale, ty, z, z, o});
}

// Homographies (n, 3, 3) taking the square's corners (±1, ±1) to corners + d, d (n, 4, 2). Solved as the
// usual 8x8 linear system per cutout, batched.
at::Tensor perspective_matrices(const at::Tensor& d) {
  const int64_t n = d.size(0);
  auto src = at::tensor({-1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, 1.0}, at::kDouble).view({1, 4, 2}).expand({n, 4, 2});
  auto dst = src + d;
  std::vector<at::Tensor> rows;
  std::vector<at::Tensor> rhs;
  for (int64_t i = 0; i < 4; ++i) {
    auto x = src.select(1, i).select(1, 0), y = src.select(1, i).select(1, 1);
    auto u = dst.select(1, i).select(1, 0), v = dst.select(1, i).select(1, 1);
    auto z = at::zeros_like(x), o = at::ones_like(x);
    rows.push_back(at::stack({x, y, o, z, z, z, -u * x, -u * y}, 1));
    rows.push_back(at::stack({z, z, z, x, y, o, -v * x, -v * y}, 1));
    rhs.push_back(u);
    rhs.push_back(v);
  }
  auto a = at::stack(rows, 1);                          // (n, 8, 8)
  auto b = at::stack(rhs, 1).unsqueeze(-1);             // (n, 8, 1)
  auto h = at::linalg_solve(a, b).squeeze(-1);          // (n, 8)
  return at::cat({h, at::ones({n, 1}, h.options())}, 1).view({n, 3, 3});
}

at::Tensor grey(const at::Tensor& x) {  // (N, 3, S, S) → (N, 1, S, S) luma
  return x.select(1, 0).unsqueeze(1) * 0.299 + x.select(1, 1).unsqueeze(1) * 0.587 + x.select(1, 2).unsqueeze(1) * 0.114;
}

int64_t padding_mode(const std::string& name) {
  if (name == "zeros") return 0;
  if (name == "border") return 1;
  if (name == "reflection") return 2;
  throw Error("cutout padding: expected zeros, border or reflection, got '" + name + "'");
}

}  // namespace

CutMethod parse_cut_method(const std::string& name) {
  if (name == "random" || name == "original") return CutMethod::kRandom;
  if (name == "latest") return CutMethod::kLatest;
  if (name == "disco") return CutMethod::kDisco;
  throw Error("cut method: expected random, latest or disco, got '" + name + "'");
}

std::string to_string(CutMethod method) {
  switch (method) {
    case CutMethod::kRandom: return "random";
    case CutMethod::kLatest: return "latest";
    case CutMethod::kDisco: return "disco";
  }
  return "?";
}

AugmentOptions parse_augments(const std::string& list) {
  AugmentOptions out;
  out.flip = out.affine = out.perspective = out.color_jitter = out.sharpness = out.gaussian_noise = out.erasing =
      out.noise = 0.0;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) continue;
    item = item.substr(b, e - b + 1);
    double p = 1.0;
    if (auto colon = item.find(':'); colon != std::string::npos) {
      std::string value = item.substr(colon + 1);
      item = item.substr(0, colon);
      char* end = nullptr;
      p = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(p >= 0.0 && p <= 1.0)) {
        throw Error("augments '" + list + "': probability of '" + item + "' must be in [0, 1], got '" + value + "'");
      }
    }
    if (item == "none") continue;
    if (item == "flip" || item == "Hf") out.flip = p;
    else if (item == "affine" || item == "Af") out.affine = p;
    else if (item == "perspective" || item == "Pe") out.perspective = p;
    else if (item == "jitter" || item == "Ji") out.color_jitter = p;
    else if (item == "sharpness" || item == "Sh") out.sharpness = p;
    else if (item == "gaussian" || item == "Gn") out.gaussian_noise = p;
    else if (item == "erasing" || item == "Er") out.erasing = p;
    else if (item == "noise") out.noise = p;
    else {
      throw Error("augments '" + list + "': unknown augmentation '" + item +
                  "' (known: flip affine perspective jitter sharpness gaussian erasing noise, or Hf Af Pe Ji Sh Gn Er)");
    }
  }
  return out;
}

Cutouts::Cutouts(CutoutOptions cut, AugmentOptions augment, uint64_t seed)
    : cut_(std::move(cut)), augment_(augment), gen_(at::make_generator<at::CPUGeneratorImpl>(seed)) {
  TORCH_CHECK(cut_.cutn > 0, "cutn must be positive, got ", cut_.cutn);
  TORCH_CHECK(cut_.cut_pow > 0, "cut_pow must be positive, got ", cut_.cut_pow);
  padding_mode(cut_.padding);  // validates
}

void Cutouts::reseed(uint64_t seed) { gen_ = at::make_generator<at::CPUGeneratorImpl>(seed); }

at::Tensor Cutouts::operator()(const at::Tensor& image, int64_t size) {
  TORCH_CHECK(image.dim() == 4 && image.size(1) == 3, "cutouts: expected a (B, 3, H, W) image, got ",
              shape_str(image.sizes()));
  TORCH_CHECK(size > 0, "cutouts: size must be positive");
  const int64_t b = image.size(0), h = image.size(2), w = image.size(3), cutn = cut_.cutn, n = b * cutn;
  const auto& a = augment_;

  // Source of the samples: the image itself, or (latest) its pooled S x S version.
  at::Tensor source = image;
  double src_h = h, src_w = w;
  if (cut_.method == CutMethod::kLatest) {
    source = (at::adaptive_avg_pool2d(image, {size, size}) + std::get<0>(at::adaptive_max_pool2d(image, {size, size}))) / 2;
    src_h = src_w = size;
  }

  // --- placement: side s (pixels) and top-left offset per cutout ---
  const double short_side = std::min(src_h, src_w);
  const double max_side = short_side;
  const double min_side = std::min(max_side, cut_.min_size > 0 ? cut_.min_size * short_side : double(size));
  at::Tensor side = at::rand({n}, gen_, at::kDouble).pow(cut_.cut_pow) * (max_side - min_side) + min_side;
  at::Tensor ox = at::rand({n}, gen_, at::kDouble) * (src_w - side);
  at::Tensor oy = at::rand({n}, gen_, at::kDouble) * (src_h - side);
  at::Tensor flip = coin(gen_, n, a.flip);
  if (cut_.method == CutMethod::kLatest) {
    side.fill_(size);
    ox.zero_();
    oy.zero_();
  } else if (cut_.method == CutMethod::kDisco) {
    // The first `overview` cutouts of each image see all of it, padded to a square; every other one is flipped.
    auto is_overview = (at::arange(n, at::kLong) % cutn).lt(std::min(cut_.overview, cutn));
    const double full = std::max(src_h, src_w);
    side = at::where(is_overview, at::full_like(side, full), side);
    ox = at::where(is_overview, at::full_like(ox, (src_w - full) / 2), ox);
    oy = at::where(is_overview, at::full_like(oy, (src_h - full) / 2), oy);
    flip = at::where(is_overview, (at::arange(n, at::kLong) % cutn % 2).eq(1), flip);
  }
  auto zeros = at::zeros({n}, at::kDouble), ones = at::ones({n}, at::kDouble);
  // Output (u, v) in [-1, 1] → input normalised coordinates (align_corners=False convention).
  at::Tensor transform = matrices({side / src_w, zeros, (2 * ox + side) / src_w - 1,
                                   zeros, side / src_h, (2 * oy + side) / src_h - 1,
                                   zeros, zeros, ones});

  // --- geometric augmentations, composed in the cutout's own coordinates ---
  at::Tensor aug = at::eye(3, at::kDouble).expand({n, 3, 3}).clone();
  aug.select(1, 0).select(1, 0).copy_(at::where(flip, -ones, ones));
  if (a.affine > 0) {
    auto on = coin(gen_, n, a.affine).to(at::kDouble);
    auto theta = uniform(gen_, n, -a.affine_degrees, a.affine_degrees) * (kPi / 180) * on;
    auto shear = uniform(gen_, n, -a.affine_shear, a.affine_shear) * (kPi / 180) * on;
    auto scale = 1 + uniform(gen_, n, -a.affine_scale, a.affine_scale) * on;
    auto tx = uniform(gen_, n, -2 * a.affine_translate, 2 * a.affine_translate) * on;
    auto ty = uniform(gen_, n, -2 * a.affine_translate, 2 * a.affine_translate) * on;
    aug = aug.bmm(affine_matrices(theta, shear, scale, tx, ty));
  }
  if (a.perspective > 0) {
    auto on = coin(gen_, n, a.perspective).to(at::kDouble).view({n, 1, 1});
    auto d = (at::rand({n, 4, 2}, gen_, at::kDouble) * 2 - 1) * a.perspective_distortion * on;
    aug = aug.bmm(perspective_matrices(d));
  }
  transform = transform.bmm(aug);
  last_transforms_ = transform;

  // --- one batched sampling op, supersampled then average-pooled ---
  const double largest = side.max().item<double>();
  const int64_t k = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(largest / size)), 1, 4);
  const int64_t sk = size * k;
  // The sampling grid is made where the image is: on a GPU it is N sk^2 points (14M at 512 px, cutn 32),
  // which made on the CPU and copied cost more than the whole CLIP step.
  const auto where = at::TensorOptions().dtype(at::kDouble).device(source.device());
  auto coords = (at::arange(sk, where) * 2 + 1) / sk - 1;                              // pixel centres in [-1, 1]
  auto mesh = at::meshgrid({coords, coords}, "ij");                                   // v (rows), u (cols)
  auto points = at::stack({mesh[1], mesh[0], at::ones_like(mesh[0])}, -1).view({1, sk * sk, 3});
  auto mapped = points.matmul(transform.to(source.device()).transpose(1, 2));         // (N, sk*sk, 3)
  auto grid = (mapped.narrow(2, 0, 2) / mapped.narrow(2, 2, 1)).view({n, sk, sk, 2});
  at::Tensor input = source.repeat_interleave(cutn, 0);                                // (N, 3, H', W')
  at::Tensor out = at::grid_sampler(input, grid.to(input.scalar_type()),
                                    /*bilinear*/ 0, padding_mode(cut_.padding), /*align_corners=*/false);
  if (k > 1) out = at::avg_pool2d(out, {k, k});                                        // (N, 3, S, S)

  // --- colour and noise augmentations ---
  auto opts = out.options();
  auto per_cut = [&](const at::Tensor& t) { return t.to(opts).view({n, 1, 1, 1}); };
  if (a.color_jitter > 0) {
    auto on = coin(gen_, n, a.color_jitter).to(at::kDouble);
    auto bright = per_cut(1 + uniform(gen_, n, -a.jitter_strength, a.jitter_strength) * on);
    auto contrast = per_cut(1 + uniform(gen_, n, -a.jitter_strength, a.jitter_strength) * on);
    auto sat = per_cut(1 + uniform(gen_, n, -a.jitter_strength, a.jitter_strength) * on);
    auto hue = uniform(gen_, n, -a.jitter_hue, a.jitter_hue) * on;
    out = out * bright;
    auto mean = grey(out).mean({2, 3}, /*keepdim=*/true);
    out = (out - mean) * contrast + mean;
    auto g = grey(out);
    out = g + (out - g) * sat;
    // Hue: rotate chroma in YIQ space.
    auto to_yiq = at::tensor({0.299, 0.587, 0.114, 0.596, -0.274, -0.322, 0.211, -0.523, 0.312}, at::kDouble).view({3, 3});
    auto c = hue.cos(), s = hue.sin(), z = at::zeros_like(hue), o = at::ones_like(hue);
    auto rot = matrices({o, z, z, z, c, -s, z, s, c});
    auto m = at::linalg_inv(to_yiq).matmul(rot).matmul(to_yiq).to(opts);  // (N, 3, 3)
    out = at::einsum("nij,njhw->nihw", {m, out});
  }
  if (a.sharpness > 0) {
    auto amount = per_cut(uniform(gen_, n, 0, a.sharpness_strength) * coin(gen_, n, a.sharpness).to(at::kDouble));
    auto blur = at::avg_pool2d(out, {3, 3}, {1, 1}, {1, 1}, false, /*count_include_pad=*/false);
    out = out + amount * (out - blur);
  }
  if (a.gaussian_noise > 0) {
    auto on = per_cut(coin(gen_, n, a.gaussian_noise).to(at::kDouble) * a.noise_std);
    out = out + on * at::randn({n, 3, size, size}, gen_, at::kFloat).to(opts);
  }
  if (a.erasing > 0) {
    auto on = coin(gen_, n, a.erasing);
    auto area = uniform(gen_, n, 0.02, 0.33), ratio = (uniform(gen_, n, std::log(0.3), std::log(3.3))).exp();
    auto eh = (area * ratio).sqrt().clamp_max(1.0), ew = (area / ratio).sqrt().clamp_max(1.0);
    auto ey = at::rand({n}, gen_, at::kDouble) * (1 - eh), ex = at::rand({n}, gen_, at::kDouble) * (1 - ew);
    auto pos = (at::arange(size, at::kDouble) + 0.5) / size;  // (S,)
    auto rows = pos.view({1, size, 1}).ge(ey.view({n, 1, 1})).logical_and(pos.view({1, size, 1}).lt((ey + eh).view({n, 1, 1})));
    auto cols = pos.view({1, 1, size}).ge(ex.view({n, 1, 1})).logical_and(pos.view({1, 1, size}).lt((ex + ew).view({n, 1, 1})));
    auto mask = rows.logical_and(cols).logical_and(on.view({n, 1, 1})).unsqueeze(1).to(out.device());  // (N, 1, S, S)
    out = at::where(mask, at::full_like(out, 0.5), out);
  }
  if (a.noise > 0) {
    auto facs = per_cut(uniform(gen_, n, 0, a.noise_fac) * coin(gen_, n, a.noise).to(at::kDouble));
    out = out + facs * at::randn({n, 3, size, size}, gen_, at::kFloat).to(opts);
  }
  return out;
}

}  // namespace clipguide::guidance
