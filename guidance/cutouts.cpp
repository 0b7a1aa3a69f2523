// Batched cutouts and augmentations (see cutouts.h).
// ref: nerdyrodent/VQGAN-CLIP generate.py (MakeCutouts, MakeCutoutsOrig, augment list codes);
//      Disco Diffusion v5 MakeCutoutsDango (overview + inner cuts).
#include "guidance/cutouts.h"

#include "core/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/adaptive_max_pool2d.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/ops/reflection_pad2d.h>
#include <ATen/ops/conv2d.h>
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
#include <cctype>
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
  // generate.py's names: 'original' places crops as 'random' does; 'updated' and 'nrupdated' are random
  // crops with augmentations (which every method here applies); 'updatedpooling' is the pooled 'latest'.
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "random" || n == "original" || n == "updated" || n == "nrupdated") return CutMethod::kRandom;
  if (n == "latest" || n == "updatedpooling") return CutMethod::kLatest;
  if (n == "disco") return CutMethod::kDisco;
  throw Error("cut method: expected random, latest or disco (or generate.py's original, updated, nrupdated, "
              "updatedpooling), got '" + name + "'");
}

std::string to_string(CutMethod method) {
  switch (method) {
    case CutMethod::kRandom: return "random";
    case CutMethod::kLatest: return "latest";
    case CutMethod::kDisco: return "disco";
  }
  return "?";
}

namespace {

// --- augmentations: one row each in augments() below; parse_augments reads the names from it ------------

// Geometric augmentations compose an (N, 3, 3) matrix into each cutout's homography, in the cutout's own
// coordinates (after the flip the placement draws).
using DrawGeometric = at::Tensor (*)(at::Generator& gen, int64_t n, const AugmentOptions& a);  // (N, 3, 3)

at::Tensor draw_affine(at::Generator& gen, int64_t n, const AugmentOptions& a) {
  auto on = coin(gen, n, a.affine).to(at::kDouble);
  auto theta = uniform(gen, n, -a.affine_degrees, a.affine_degrees) * (kPi / 180) * on;
  auto shear = uniform(gen, n, -a.affine_shear, a.affine_shear) * (kPi / 180) * on;
  auto scale = 1 + uniform(gen, n, -a.affine_scale, a.affine_scale) * on;
  auto tx = uniform(gen, n, -2 * a.affine_translate, 2 * a.affine_translate) * on;
  auto ty = uniform(gen, n, -2 * a.affine_translate, 2 * a.affine_translate) * on;
  return affine_matrices(theta, shear, scale, tx, ty);
}

at::Tensor draw_perspective(at::Generator& gen, int64_t n, const AugmentOptions& a) {
  auto on = coin(gen, n, a.perspective).to(at::kDouble).view({n, 1, 1});
  auto d = (at::rand({n, 4, 2}, gen, at::kDouble) * 2 - 1) * a.perspective_distortion * on;
  return perspective_matrices(d);
}

at::Tensor draw_rotation(at::Generator& gen, int64_t n, const AugmentOptions& a) {
  auto on = coin(gen, n, a.rotation).to(at::kDouble);
  auto theta = uniform(gen, n, -a.rotation_degrees, a.rotation_degrees) * (kPi / 180) * on;
  auto z = at::zeros({n}, at::kDouble), o = at::ones({n}, at::kDouble);
  return affine_matrices(theta, z, o, z, z);
}

// (n, 3, 3) taking the output square onto an axis-aligned part of half-sides (sx, sy) placed at random
// inside the cutout; off: the identity.
at::Tensor part_matrices(at::Generator& gen, const at::Tensor& on, at::Tensor sx, at::Tensor sy) {
  const int64_t n = on.size(0);
  auto tx = (at::rand({n}, gen, at::kDouble) * 2 - 1) * (1 - sx), ty = (at::rand({n}, gen, at::kDouble) * 2 - 1) * (1 - sy);
  auto off = on.logical_not();
  auto z = at::zeros({n}, at::kDouble), o = at::ones({n}, at::kDouble);
  sx = at::where(off, o, sx), sy = at::where(off, o, sy), tx = at::where(off, z, tx), ty = at::where(off, z, ty);
  return matrices({sx, z, tx, z, sy, ty, z, z, o});
}

at::Tensor draw_crop(at::Generator& gen, int64_t n, const AugmentOptions& a) {
  auto on = coin(gen, n, a.crop);
  auto side = uniform(gen, n, std::clamp(a.crop_min, 0.01, 1.0), 1.0);
  return part_matrices(gen, on, side, side);
}

at::Tensor draw_resized_crop(at::Generator& gen, int64_t n, const AugmentOptions& a) {
  auto on = coin(gen, n, a.resized_crop);
  auto area = uniform(gen, n, std::clamp(a.resized_crop_min_area, 1e-4, 1.0), 1.0);
  auto ratio = uniform(gen, n, std::log(3.0 / 4.0), std::log(4.0 / 3.0)).exp();
  return part_matrices(gen, on, (area * ratio).sqrt().clamp_max(1.0), (area / ratio).sqrt().clamp_max(1.0));
}

// Pixel augmentations act on the sampled cutouts: every cutout's parameters are drawn for the whole step
// (CPU tensors, first dimension N), then a slice of them is applied to a slice of the cutouts.
using DrawPixel = std::vector<at::Tensor> (*)(at::Generator& gen, int64_t n, int64_t size, const AugmentOptions& a);
using ApplyPixel = at::Tensor (*)(const at::Tensor& out, const std::vector<at::Tensor>& params);  // out (n, 3, S, S)

// A CPU tensor (a plan's draws) on `device` without waiting for the device: a plain copy from pageable
// memory synchronises the stream, which costs a CUDA step its overlap of launching and running (and one
// wait per cutout micro-batch). Through pinned memory the copy is asynchronous.
at::Tensor upload(const at::Tensor& t, const at::TensorOptions& options) {
  if (!options.device().is_cuda()) return t.to(options);
  return t.to(options.dtype()).pin_memory().to(options.device(), /*non_blocking=*/true);
}

// (n,) per-cutout factors → (n, 1, 1, 1) in out's dtype and device.
at::Tensor per_cut(const at::Tensor& t, const at::Tensor& out) { return upload(t, out.options()).view({-1, 1, 1, 1}); }

// --- warps: a per-cutout sampling grid (n, S, S, 2) in [-1, 1] (x, y), the identity where off ---

// (S, S, 2) pixel centres in [-1, 1], (x, y) as grid_sample reads them (align_corners=False).
at::Tensor identity_grid(int64_t size) {
  auto c = (at::arange(size, at::kDouble) * 2 + 1) / size - 1;
  auto mesh = at::meshgrid({c, c}, "ij");  // rows (y), cols (x)
  return at::stack({mesh[1], mesh[0]}, -1);
}

// Uniform noise on a coarse L x L lattice (L = min(S, 16): the field is smooth, so its detail costs nothing),
// blurred by a Gaussian of elastic_sigma of the side, scaled to RMS elastic_alpha and resized to S.
std::vector<at::Tensor> draw_elastic(at::Generator& gen, int64_t n, int64_t size, const AugmentOptions& a) {
  auto on = coin(gen, n, a.elastic).to(at::kDouble);
  const int64_t lattice = std::min<int64_t>(size, 16);
  auto field = (at::rand({n * 2, 1, lattice, lattice}, gen, at::kDouble) * 2 - 1);
  const double sigma = std::max(a.elastic_sigma * lattice, 0.3);
  const int64_t radius = std::min<int64_t>(static_cast<int64_t>(std::ceil(2 * sigma)), lattice - 1);
  if (radius > 0) {
    auto x = at::arange(-radius, radius + 1, at::kDouble);
    auto k = (-(x * x) / (2 * sigma * sigma)).exp();
    k = k / k.sum();
    field = at::conv2d(at::reflection_pad2d(field, {radius, radius, 0, 0}), k.view({1, 1, 1, -1}));
    field = at::conv2d(at::reflection_pad2d(field, {0, 0, radius, radius}), k.view({1, 1, -1, 1}));
  }
  field = field.view({n, 2, lattice, lattice});
  field = field / field.pow(2).mean({1, 2, 3}, /*keepdim=*/true).sqrt().clamp_min(1e-12);
  field = at::upsample_bilinear2d(field, {size, size}, /*align_corners=*/false) * a.elastic_alpha * on.view({n, 1, 1, 1});
  return {(identity_grid(size).unsqueeze(0) + field.permute({0, 2, 3, 1})).to(at::kFloat)};
}

// The thin-plate spline f with f(c_i) = c_i + d_i at the corners and the centre c_i (Kornia's control
// points), d_i uniform in ±thin_plate_scale: f(p) = A [1, p] + sum_i w_i U(|p - c_i|), U(r) = r^2 log r.
// The system matrix depends on the control points only, so one matrix serves every cutout.
std::vector<at::Tensor> draw_thin_plate(at::Generator& gen, int64_t n, int64_t size, const AugmentOptions& a) {
  auto on = coin(gen, n, a.thin_plate).to(at::kDouble);
  auto c = at::tensor({-1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 0.0, 0.0}, at::kDouble).view({5, 2});
  auto dst = c.unsqueeze(0) + (at::rand({n, 5, 2}, gen, at::kDouble) * 2 - 1) * a.thin_plate_scale * on.view({n, 1, 1});
  auto kernel = [](const at::Tensor& d2) { return 0.5 * d2 * (d2 + 1e-12).log(); };  // r^2 log r from r^2
  auto k = kernel((c.unsqueeze(1) - c.unsqueeze(0)).pow(2).sum(-1));                 // (5, 5)
  auto p = at::cat({at::ones({5, 1}, at::kDouble), c}, 1);                           // (5, 3)
  auto system = at::cat({at::cat({k, p}, 1), at::cat({p.t(), at::zeros({3, 3}, at::kDouble)}, 1)}, 0);  // (8, 8)
  auto rhs = at::cat({dst, at::zeros({n, 3, 2}, at::kDouble)}, 1);                 // (n, 8, 2)
  auto coef = at::linalg_solve(system.expand({n, 8, 8}), rhs);                       // (n, 8, 2): w then A
  auto points = identity_grid(size).view({size * size, 2});
  auto u = kernel((points.unsqueeze(1) - c.unsqueeze(0)).pow(2).sum(-1));            // (S*S, 5)
  auto lin = at::cat({at::ones({size * size, 1}, at::kDouble), points}, 1);          // (S*S, 3)
  auto grid = u.matmul(coef.narrow(1, 0, 5)) + lin.matmul(coef.narrow(1, 5, 3));     // (n, S*S, 2)
  return {grid.view({n, size, size, 2}).to(at::kFloat)};
}

std::vector<at::Tensor> draw_jitter(at::Generator& gen, int64_t n, int64_t, const AugmentOptions& a) {
  auto on = coin(gen, n, a.color_jitter).to(at::kDouble);
  auto bright = 1 + uniform(gen, n, -a.jitter_strength, a.jitter_strength) * on;
  auto contrast = 1 + uniform(gen, n, -a.jitter_strength, a.jitter_strength) * on;
  auto sat = 1 + uniform(gen, n, -a.jitter_strength, a.jitter_strength) * on;
  auto hue = uniform(gen, n, -a.jitter_hue, a.jitter_hue) * on;
  return {bright, contrast, sat, hue};
}

at::Tensor apply_jitter(const at::Tensor& in, const std::vector<at::Tensor>& p) {
  at::Tensor out = in * per_cut(p[0], in);
  auto mean = grey(out).mean({2, 3}, /*keepdim=*/true);
  out = (out - mean) * per_cut(p[1], in) + mean;
  auto g = grey(out);
  out = g + (out - g) * per_cut(p[2], in);
  // Hue: rotate chroma in YIQ space.
  const at::Tensor& hue = p[3];
  auto to_yiq = at::tensor({0.299, 0.587, 0.114, 0.596, -0.274, -0.322, 0.211, -0.523, 0.312}, at::kDouble).view({3, 3});
  auto c = hue.cos(), s = hue.sin(), z = at::zeros_like(hue), o = at::ones_like(hue);
  auto rot = matrices({o, z, z, z, c, -s, z, s, c});
  auto m = upload(at::linalg_inv(to_yiq).matmul(rot).matmul(to_yiq), in.options());  // (n, 3, 3)
  return at::einsum("nij,njhw->nihw", {m, out});
}

std::vector<at::Tensor> draw_sharpness(at::Generator& gen, int64_t n, int64_t, const AugmentOptions& a) {
  auto amount = uniform(gen, n, 0, a.sharpness_strength);
  return {amount * coin(gen, n, a.sharpness).to(at::kDouble)};
}

at::Tensor apply_sharpness(const at::Tensor& out, const std::vector<at::Tensor>& p) {
  auto blur = at::avg_pool2d(out, {3, 3}, {1, 1}, {1, 1}, false, /*count_include_pad=*/false);
  return out + per_cut(p[0], out) * (out - blur);
}

std::vector<at::Tensor> draw_gaussian(at::Generator& gen, int64_t n, int64_t size, const AugmentOptions& a) {
  auto std = coin(gen, n, a.gaussian_noise).to(at::kDouble) * a.noise_std;
  return {std, at::randn({n, 3, size, size}, gen, at::kFloat)};
}

std::vector<at::Tensor> draw_noise(at::Generator& gen, int64_t n, int64_t size, const AugmentOptions& a) {
  auto fac = uniform(gen, n, 0, a.noise_fac);
  fac = fac * coin(gen, n, a.noise).to(at::kDouble);
  return {fac, at::randn({n, 3, size, size}, gen, at::kFloat)};
}

at::Tensor apply_noise(const at::Tensor& out, const std::vector<at::Tensor>& p) {  // gaussian and noise
  return out + per_cut(p[0], out) * upload(p[1], out.options());
}

std::vector<at::Tensor> draw_erasing(at::Generator& gen, int64_t n, int64_t size, const AugmentOptions& a) {
  auto on = coin(gen, n, a.erasing);
  auto area = uniform(gen, n, 0.02, 0.33), ratio = (uniform(gen, n, std::log(0.3), std::log(3.3))).exp();
  auto eh = (area * ratio).sqrt().clamp_max(1.0), ew = (area / ratio).sqrt().clamp_max(1.0);
  auto ey = at::rand({n}, gen, at::kDouble) * (1 - eh), ex = at::rand({n}, gen, at::kDouble) * (1 - ew);
  auto pos = (at::arange(size, at::kDouble) + 0.5) / size;  // (S,)
  auto rows = pos.view({1, size, 1}).ge(ey.view({n, 1, 1})).logical_and(pos.view({1, size, 1}).lt((ey + eh).view({n, 1, 1})));
  auto cols = pos.view({1, 1, size}).ge(ex.view({n, 1, 1})).logical_and(pos.view({1, 1, size}).lt((ex + ew).view({n, 1, 1})));
  return {rows.logical_and(cols).logical_and(on.view({n, 1, 1})).unsqueeze(1)};  // (N, 1, S, S)
}

at::Tensor apply_erasing(const at::Tensor& out, const std::vector<at::Tensor>& p) {
  return at::where(upload(p[0], out.options().dtype(at::kBool)), at::full_like(out, 0.5), out);
}

at::Tensor apply_warp(const at::Tensor& out, const std::vector<at::Tensor>& p) {  // elastic, thin plate
  return at::grid_sampler(out, upload(p[0], out.options()), /*bilinear*/ 0, /*border*/ 1, /*align_corners=*/false);
}

// Every augmentation, one row each, in the order a step draws them (the random stream depends on it): flip
// (drawn with the placement), the geometric rows, then the pixel rows. Adding an augmentation is its
// AugmentOptions field (probability and strengths) and its row here; parse_augments and augment_names()
// read the names and codes from this table.
struct Augment {
  AugmentName name;
  DrawGeometric geometric = nullptr;  // set for a geometric augmentation
  DrawPixel draw = nullptr;           // set, with apply, for a pixel augmentation
  ApplyPixel apply = nullptr;
};

const std::vector<Augment>& augments() {
  using A = AugmentOptions;
  static const std::vector<Augment> table = {
      {{"flip", "Hf", &A::flip}},
      {{"affine", "Af", &A::affine}, draw_affine},
      {{"perspective", "Pe", &A::perspective}, draw_perspective},
      {{"rotation", "Ro", &A::rotation}, draw_rotation},
      {{"crop", "Cr", &A::crop}, draw_crop},
      {{"resized_crop", "Re", &A::resized_crop}, draw_resized_crop},
      {{"elastic", "Et", &A::elastic}, nullptr, draw_elastic, apply_warp},
      {{"thin_plate", "Ts", &A::thin_plate}, nullptr, draw_thin_plate, apply_warp},
      {{"jitter", "Ji", &A::color_jitter}, nullptr, draw_jitter, apply_jitter},
      {{"sharpness", "Sh", &A::sharpness}, nullptr, draw_sharpness, apply_sharpness},
      {{"gaussian", "Gn", &A::gaussian_noise}, nullptr, draw_gaussian, apply_noise},
      {{"erasing", "Er", &A::erasing}, nullptr, draw_erasing, apply_erasing},
      {{"noise", "", &A::noise}, nullptr, draw_noise, apply_noise},
  };
  return table;
}

}  // namespace

const std::vector<AugmentName>& augment_names() {
  static const std::vector<AugmentName> names = [] {
    std::vector<AugmentName> out;
    for (const auto& a : augments()) out.push_back(a.name);
    return out;
  }();
  return names;
}

AugmentOptions parse_augments(const std::string& list) {
  AugmentOptions out;
  for (const auto& a : augment_names()) out.*a.probability = 0.0;
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
    const auto& names = augment_names();
    auto it = std::find_if(names.begin(), names.end(), [&](const AugmentName& a) { return item == a.name || item == a.code; });
    if (item.empty() || it == names.end()) {
      std::string known, codes;
      for (const auto& a : names) known += std::string(" ") + a.name, codes += *a.code ? std::string(" ") + a.code : "";
      throw Error("augments '" + list + "': unknown augmentation '" + item + "' (known:" + known + ", or" + codes + ")");
    }
    out.*it->probability = p;
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
  const CutoutPlan p = plan(image, size);
  return sample(image, p, 0, p.count);
}

at::Tensor Cutouts::placement(const at::Tensor& image, int64_t size, int64_t n, CutoutPlan& plan) {
  const int64_t h = image.size(2), w = image.size(3), cutn = cut_.cutn;
  // Source of the samples: the image itself, or (latest) its pooled S x S version.
  const double src_h = plan.pooled ? size : h, src_w = plan.pooled ? size : w;
  const double short_side = std::min(src_h, src_w);
  const double max_side = short_side;
  const double min_side = std::min(max_side, cut_.min_size > 0 ? cut_.min_size * short_side : double(size));
  at::Tensor side = at::rand({n}, gen_, at::kDouble).pow(cut_.cut_pow) * (max_side - min_side) + min_side;
  at::Tensor ox = at::rand({n}, gen_, at::kDouble) * (src_w - side);
  at::Tensor oy = at::rand({n}, gen_, at::kDouble) * (src_h - side);
  at::Tensor flip = coin(gen_, n, augment_.flip);
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
  // Supersampling: enough that the largest crop is not aliased when sampled to S.
  plan.supersample = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(side.max().item<double>() / size)), 1, 4);
  auto zeros = at::zeros({n}, at::kDouble), ones = at::ones({n}, at::kDouble);
  // Output (u, v) in [-1, 1] → input normalised coordinates (align_corners=False convention), flipped first.
  at::Tensor crop = matrices({side / src_w, zeros, (2 * ox + side) / src_w - 1,
                              zeros, side / src_h, (2 * oy + side) / src_h - 1,
                              zeros, zeros, ones});
  at::Tensor mirror = at::eye(3, at::kDouble).expand({n, 3, 3}).clone();
  mirror.select(1, 0).select(1, 0).copy_(at::where(flip, -ones, ones));
  return crop.bmm(mirror);
}

CutoutPlan Cutouts::plan(const at::Tensor& image, int64_t size) {
  TORCH_CHECK(image.dim() == 4 && image.size(1) == 3, "cutouts: expected a (B, 3, H, W) image, got ",
              shape_str(image.sizes()));
  TORCH_CHECK(size > 0, "cutouts: size must be positive");
  CutoutPlan plan;
  plan.cutn = cut_.cutn;
  plan.count = image.size(0) * cut_.cutn;
  plan.size = size;
  plan.pooled = cut_.method == CutMethod::kLatest;
  at::Tensor transform = placement(image, size, plan.count, plan);
  for (const auto& a : augments()) {
    if (a.geometric && augment_.*a.name.probability > 0) transform = transform.bmm(a.geometric(gen_, plan.count, augment_));
  }
  plan.transforms = transform;
  last_transforms_ = transform;
  for (const auto& a : augments()) {
    if (!a.draw) continue;
    plan.pixel.push_back(augment_.*a.name.probability > 0 ? a.draw(gen_, plan.count, size, augment_) : std::vector<at::Tensor>{});
  }
  return plan;
}

at::Tensor Cutouts::sample(const at::Tensor& image, const CutoutPlan& plan, int64_t begin, int64_t count) const {
  TORCH_CHECK(image.dim() == 4 && image.size(1) == 3 && image.size(0) * plan.cutn == plan.count,
              "cutouts: the image ", shape_str(image.sizes()), " is not the one the plan was made for");
  TORCH_CHECK(begin >= 0 && count > 0 && begin + count <= plan.count, "cutouts: slice [", begin, ", ", begin + count,
              ") outside the plan's ", plan.count, " cutouts");
  const int64_t size = plan.size, sk = size * plan.supersample;
  at::Tensor source = image;
  if (plan.pooled) {
    source = (at::adaptive_avg_pool2d(image, {size, size}) + std::get<0>(at::adaptive_max_pool2d(image, {size, size}))) / 2;
  }
  // One batched sampling op, supersampled then average-pooled. The sampling grid is made where the image is:
  // on a GPU it is count k^2 S^2 points (14M at 512 px, cutn 32), which made on the CPU and copied cost more
  // than the whole CLIP step.
  const auto where = at::TensorOptions().dtype(at::kDouble).device(source.device());
  auto coords = (at::arange(sk, where) * 2 + 1) / sk - 1;                              // pixel centres in [-1, 1]
  auto mesh = at::meshgrid({coords, coords}, "ij");                                   // v (rows), u (cols)
  auto points = at::stack({mesh[1], mesh[0], at::ones_like(mesh[0])}, -1).view({1, sk * sk, 3});
  auto transform = upload(plan.transforms.narrow(0, begin, count), where);
  auto mapped = points.matmul(transform.transpose(1, 2));                              // (n, sk*sk, 3)
  auto grid = (mapped.narrow(2, 0, 2) / mapped.narrow(2, 2, 1)).view({count, sk, sk, 2});
  // Each cutout's image: one image is shared by every cutout without a copy.
  at::Tensor input = source.size(0) == 1
                         ? source.expand({count, -1, -1, -1})
                         : source.index_select(0, at::arange(begin, begin + count, at::kLong).div(plan.cutn, "floor").to(source.device()));
  at::Tensor out = at::grid_sampler(input, grid.to(input.scalar_type()), /*bilinear*/ 0, padding_mode(cut_.padding),
                                    /*align_corners=*/false);
  if (plan.supersample > 1) out = at::avg_pool2d(out, {plan.supersample, plan.supersample});  // (n, 3, S, S)
  size_t i = 0;  // plan.pixel holds one entry per pixel row of augments(), in its order
  for (const auto& a : augments()) {
    if (!a.apply) continue;
    const auto& drawn = plan.pixel[i++];
    if (drawn.empty()) continue;
    std::vector<at::Tensor> params;
    for (const auto& t : drawn) params.push_back(t.narrow(0, begin, count));
    out = a.apply(out, params);
  }
  return out;
}

}  // namespace clipguide::guidance
