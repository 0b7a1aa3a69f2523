// Cutouts: the many augmented crops of the rendered image that CLIP scores each step. All cutouts of a
// step (or of one micro-batch of them) come from ONE batched grid_sample: each cutout is a 3x3 homography (crop placement composed with
// flip, affine and perspective augmentations) from output to input coordinates, sampled with 2x..4x
// supersampling and average pooling for antialiasing. Colour and noise augmentations follow on the batch.
// Shapes: B images, N = B * cutn cutouts, S cutout side (the CLIP model's input size), H x W image.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace clipguide::guidance {

enum class CutMethod {
  kRandom,  // VQGAN+CLIP's original: square crops of side min + rand^cut_pow * (max - min) at random places
  kLatest,  // VQGAN+CLIP's "latest": the whole image pooled ((avg + max) / 2) to S, differing only by augmentation
  kDisco,   // Disco Diffusion's: `overview` whole-image views (padded to square, half flipped) + random inner crops
};
CutMethod parse_cut_method(const std::string& name);  // "random" | "latest" | "disco" (any case; generate.py's
                                                      // original, updated, nrupdated, updatedpooling); Error otherwise
std::string to_string(CutMethod method);

struct CutoutOptions {
  int64_t cutn = 32;                       // cutouts per image per step
  double cut_pow = 1.0;                    // crop-size exponent: < 1 favours large crops, > 1 small ones
  double min_size = 0.0;                   // smallest crop side as a fraction of the shorter image side (0: S px)
  CutMethod method = CutMethod::kRandom;   // how crops are placed
  int64_t overview = 4;                    // kDisco: whole-image views among the cutn
  std::string padding = "border";          // grid_sample padding outside the image: border, zeros, reflection
};

// Each augmentation is applied to a cutout with its probability (0 disables it).
struct AugmentOptions {
  double flip = 0.5;            // horizontal flip
  double affine = 0.0;          // rotation ±affine_degrees, translation ±affine_translate, scale, shear
  double affine_degrees = 15.0;
  double affine_translate = 0.1;  // fraction of the cutout side
  double affine_scale = 0.1;      // scale in [1 - s, 1 + s]
  double affine_shear = 5.0;      // degrees
  double perspective = 0.0;     // corners moved by up to perspective_distortion x half the side
  double perspective_distortion = 0.2;
  double color_jitter = 0.0;    // brightness, contrast, saturation ±jitter_strength, hue ±jitter_hue (radians)
  double jitter_strength = 0.1;
  double jitter_hue = 0.1;
  double sharpness = 0.0;       // unsharp mask of strength in [0, sharpness_strength]
  double sharpness_strength = 0.3;
  double gaussian_noise = 0.0;  // noise of std noise_std
  double noise_std = 0.05;
  double erasing = 0.0;         // one rectangle (2%..33% of the area) set to mid grey
  double noise = 0.0;           // VQGAN+CLIP's additive noise: strength uniform in [0, noise_fac] per cutout
  double noise_fac = 0.1;
  double rotation = 0.0;        // rotation alone, ±rotation_degrees (Kornia RandomRotation in generate.py: 15)
  double rotation_degrees = 15.0;
  double crop = 0.0;            // a square part of side [crop_min, 1] of the cutout, resized back
  double crop_min = 0.8;
  double resized_crop = 0.0;    // a part of area [resized_crop_min_area, 1] and aspect 3/4..4/3, resized back
  double resized_crop_min_area = 0.1;
  double elastic = 0.0;         // a smooth random displacement field: RMS elastic_alpha (in [-1, 1] units),
  double elastic_alpha = 0.05;  //   correlated over elastic_sigma of the side (Kornia's 32 px of 224)
  double elastic_sigma = 0.14;
  double thin_plate = 0.0;      // thin-plate-spline warp: the corners and centre moved by up to
  double thin_plate_scale = 0.2;  //   thin_plate_scale (in [-1, 1] units; Kornia RandomThinPlateSpline)
};

// Parses "flip,affine:0.7,noise" style lists: each name enables that augmentation with probability 1
// (or the given one), everything not named is disabled. Names and codes come from augment_names():
// flip affine perspective jitter sharpness gaussian erasing noise rotation crop resized_crop elastic
// thin_plate; VQGAN+CLIP's short codes Hf Af Pe Ji Sh Gn Er Ro Cr Re Et Ts (and "none").
AugmentOptions parse_augments(const std::string& list);

// Every augmentation: its name, VQGAN+CLIP's code ("" if none) and its probability in AugmentOptions.
struct AugmentName {
  const char* name;
  const char* code;
  double AugmentOptions::*probability;
};
const std::vector<AugmentName>& augment_names();

// Every random draw of one step's cutouts at one size: the crops and geometric augmentations as (N, 3, 3)
// homographies, and each pixel augmentation's per-cutout parameters. Made once per step by Cutouts::plan;
// any slice of the cutouts can then be sampled (cutout micro-batches give the same cutouts as one batch).
struct CutoutPlan {
  int64_t count = 0;        // N = B * cutn
  int64_t cutn = 1;         // cutouts per image: cutout i comes from image i / cutn
  int64_t size = 0;         // S
  int64_t supersample = 1;  // k: each cutout sampled at k S x k S, then average-pooled to S
  bool pooled = false;      // kLatest: sampled from the image pooled to S x S
  at::Tensor transforms;    // (N, 3, 3) double, output (u, v) in [-1, 1] → input normalised coordinates
  std::vector<std::vector<at::Tensor>> pixel;  // per pixel augmentation (cutouts.cpp's table): tensors (N, ...)
};

class Cutouts {
 public:
  Cutouts(CutoutOptions cut, AugmentOptions augment, uint64_t seed = 0);

  // (B, 3, H, W) in [0, 1] → (B * cutn, 3, size, size), differentiable w.r.t. the image. Cutouts of image b
  // are rows [b * cutn, (b + 1) * cutn). Random placement and augmentation come from this object's own
  // generator, so a given seed gives the same cutouts whatever else the program draws.
  at::Tensor operator()(const at::Tensor& image, int64_t size);

  // The two halves of operator(): every draw for `image`'s cutouts at `size` (from this object's generator),
  // then the cutouts [begin, begin + count) of that plan. sample() draws nothing: slices of one plan
  // concatenated equal the whole.
  CutoutPlan plan(const at::Tensor& image, int64_t size);
  at::Tensor sample(const at::Tensor& image, const CutoutPlan& plan, int64_t begin, int64_t count) const;

  void reseed(uint64_t seed);
  const CutoutOptions& cut_options() const { return cut_; }
  const AugmentOptions& augment_options() const { return augment_; }
  CutoutOptions& cut_options() { return cut_; }
  AugmentOptions& augment_options() { return augment_; }

  // (N, 3, 3) output→input homographies of the last plan (normalised coordinates), for tests and display.
  const at::Tensor& last_transforms() const { return last_transforms_; }

 private:
  at::Tensor placement(const at::Tensor& image, int64_t size, int64_t n, CutoutPlan& plan);  // crops, flips

  CutoutOptions cut_;
  AugmentOptions augment_;
  at::Generator gen_;
  at::Tensor last_transforms_;
};

}  // namespace clipguide::guidance
