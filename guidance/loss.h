// The text/image-to-image similarity loss of CLIP guidance: distances between embeddings, one prompt's
// weighted loss with a stop threshold, and image regularisers.
// Shapes: N cutout embeddings, M targets, E embedding width, B images, H x W pixels.
#pragma once

#include <ATen/core/Tensor.h>

#include <limits>

namespace clipguide::guidance {

enum class Distance {
  kSpherical,  // 2 * asin(|a - b| / 2)^2 on unit vectors: half the squared great-circle angle (VQGAN+CLIP)
  kCosine,     // 1 - cos(a, b)
};

// (N, E) x (M, E) → (N, M). Both sides are normalised to unit length first.
at::Tensor embedding_distance(const at::Tensor& a, const at::Tensor& b, Distance kind = Distance::kSpherical);

// One target embedding with its weight and stop, as parsed from "text:weight:stop".
struct Target {
  at::Tensor embedding;                                    // (E,) or (1, E): text or image prompt embedding
  double weight = 1.0;                                     // negative pushes away
  double stop = -std::numeric_limits<double>::infinity();  // sign-adjusted distance where the pull stops
};

// VQGAN+CLIP's Prompt.forward: d = distance(cutouts, target) * sign(weight);
// loss = |weight| * mean(replace_grad(d, max(d, stop))): the value is unchanged by stop, the gradient is
// zero for cutouts already past it. (N, E) → scalar.
at::Tensor prompt_loss(const at::Tensor& cutout_embeddings, const Target& target, Distance kind = Distance::kSpherical);

// Regularisers on (B, 3, H, W) images in [0, 1]; each returns a scalar to be multiplied by its weight.
at::Tensor total_variation(const at::Tensor& image);  // mean squared difference of neighbouring pixels
at::Tensor symmetry_loss(const at::Tensor& image);    // mean squared difference to the left-right mirror image
at::Tensor saturation_loss(const at::Tensor& image);  // mean colour saturation (max - min over RGB): a positive
                                                      // weight pulls towards grey, a negative one towards vivid
// Init-image loss: mse(image, init) / 2 scaled by 1 / (2 * step + 1), VQGAN+CLIP's decay of its init weight.
at::Tensor init_image_loss(const at::Tensor& image, const at::Tensor& init, int64_t step);

}  // namespace clipguide::guidance
