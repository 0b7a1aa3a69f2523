// Guidance losses (see loss.h). ref: nerdyrodent/VQGAN-CLIP generate.py (spherical_dist_loss, Prompt).
#include "guidance/loss.h"

#include "core/error.h"
#include "core/grad_ops.h"

#include <ATen/ops/asin.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/scalar_tensor.h>

#include <cmath>

namespace clipguide::guidance {
namespace {
at::Tensor unit(const at::Tensor& x) { return x / at::linalg_vector_norm(x, 2, {-1}, /*keepdim=*/true); }

void check_image(const at::Tensor& image, const char* what) {
  TORCH_CHECK(image.dim() == 4 && image.size(1) == 3, what, ": expected a (B, 3, H, W) image, got ",
              shape_str(image.sizes()));
}
}  // namespace

at::Tensor embedding_distance(const at::Tensor& a, const at::Tensor& b, Distance kind) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1), "embedding_distance: expected (N, E) and (M, E), got ",
              shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  at::Tensor an = unit(a), bn = unit(b);
  if (kind == Distance::kCosine) return 1 - an.matmul(bn.t());
  // |a - b| computed directly (not from the dot product): accurate and with a finite gradient near 0.
  at::Tensor chord = (an.unsqueeze(1) - bn.unsqueeze(0)).norm(2, {-1});  // (N, M)
  return at::asin(chord.div(2)).pow(2).mul(2);
}

at::Tensor prompt_loss(const at::Tensor& cutout_embeddings, const Target& target, Distance kind) {
  TORCH_CHECK(target.embedding.defined(), "prompt_loss: the target has no embedding");
  at::Tensor embed = target.embedding.dim() == 1 ? target.embedding.unsqueeze(0) : target.embedding;  // (1, E)
  at::Tensor d = embedding_distance(cutout_embeddings, embed.to(cutout_embeddings.dtype()), kind);   // (N, 1)
  const double sign = target.weight < 0 ? -1.0 : 1.0;
  d = d * sign;
  at::Tensor floor = at::maximum(d, at::scalar_tensor(target.stop, d.options()));
  return std::abs(target.weight) * replace_grad(d, floor).mean();
}

at::Tensor total_variation(const at::Tensor& image) {
  check_image(image, "total_variation");
  at::Tensor dx = image.narrow(3, 1, image.size(3) - 1) - image.narrow(3, 0, image.size(3) - 1);
  at::Tensor dy = image.narrow(2, 1, image.size(2) - 1) - image.narrow(2, 0, image.size(2) - 1);
  return dx.pow(2).mean() + dy.pow(2).mean();
}

at::Tensor symmetry_loss(const at::Tensor& image) {
  check_image(image, "symmetry_loss");
  return (image - image.flip({3})).pow(2).mean();
}

at::Tensor saturation_loss(const at::Tensor& image) {
  check_image(image, "saturation_loss");
  return (std::get<0>(image.max(1)) - std::get<0>(image.min(1))).mean();
}

at::Tensor init_image_loss(const at::Tensor& image, const at::Tensor& init, int64_t step) {
  check_image(image, "init_image_loss");
  TORCH_CHECK(init.dim() == 4 && init.size(1) == 3 && init.size(2) == image.size(2) && init.size(3) == image.size(3),
              "init_image_loss: init image ", shape_str(init.sizes()), " does not match ", shape_str(image.sizes()));
  return at::mse_loss(image, init.expand_as(image).to(image.dtype())) / (2.0 * (2 * step + 1));
}

}  // namespace clipguide::guidance
