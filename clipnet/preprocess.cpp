// CLIP preprocessing (see preprocess.h). ref: openai/CLIP clip/clip.py _transform (openai-clip 1.0.1),
// torchvision 0.26 transforms.functional resize/center_crop.
#include "clipnet/preprocess.h"

#include "core/error.h"
#include "core/image_io.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <torch/nn/functional/upsampling.h>

#include <cmath>

namespace clipguide::clipnet {
namespace F = torch::nn::functional;

namespace {

void check_image(const at::Tensor& image, const char* what) {
  TORCH_CHECK(image.dim() == 3 || image.dim() == 4, what, ": expected (3, H, W) or (B, 3, H, W), got ",
              shape_str(image.sizes()));
  TORCH_CHECK(image.size(-3) == 3, what, ": expected 3 channels, got ", shape_str(image.sizes()));
}

// Antialiased bicubic to (h, w) on (B, C, H, W) float, the PIL-compatible kernel (a = -0.5).
at::Tensor bicubic_aa(const at::Tensor& x, int64_t h, int64_t w) {
  if (x.size(-2) == h && x.size(-1) == w) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{h, w})
                               .mode(torch::kBicubic)
                               .align_corners(false)
                               .antialias(true));
}

// Crop offset as torchvision computes it: int(round((in - out) / 2)), Python's round-half-even.
int64_t crop_offset(int64_t in, int64_t out) { return static_cast<int64_t>(std::nearbyint((in - out) / 2.0)); }

at::Tensor center_crop(const at::Tensor& x, int64_t size) {
  const int64_t h = x.size(-2), w = x.size(-1);
  TORCH_CHECK(h >= size && w >= size, "center_crop: image ", h, "x", w, " is smaller than ", size);
  return x.narrow(-2, crop_offset(h, size), size).narrow(-1, crop_offset(w, size), size);
}

}  // namespace

std::array<int64_t, 2> resized_shortest(int64_t h, int64_t w, int64_t size) {
  TORCH_CHECK(h > 0 && w > 0 && size > 0, "resized_shortest: bad sizes ", h, "x", w, " -> ", size);
  if (w <= h) return {static_cast<int64_t>(static_cast<double>(size) * h / w), size};
  return {size, static_cast<int64_t>(static_cast<double>(size) * w / h)};
}

at::Tensor resize_center_crop(const at::Tensor& image, int64_t size) {
  check_image(image, "resize_center_crop");
  at::Tensor x = image.dim() == 3 ? image.unsqueeze(0) : image;  // (B, 3, H, W)
  auto [h, w] = resized_shortest(x.size(2), x.size(3), size);
  x = center_crop(bicubic_aa(x, h, w), size);  // (B, 3, S, S)
  return image.dim() == 3 ? x.squeeze(0) : x;
}

at::Tensor normalize(const at::Tensor& image, c10::ArrayRef<double> mean, c10::ArrayRef<double> std) {
  check_image(image, "normalize");
  TORCH_CHECK(mean.size() == 3 && std.size() == 3, "normalize: need 3 means and 3 stds, got ", mean.size(),
              " and ", std.size());
  auto opts = at::TensorOptions().dtype(image.scalar_type()).device(image.device());
  auto m = at::tensor(std::vector<double>(mean.begin(), mean.end()), opts).view({3, 1, 1});
  auto s = at::tensor(std::vector<double>(std.begin(), std.end()), opts).view({3, 1, 1});
  return (image - m) / s;
}

at::Tensor preprocess_tensor(const at::Tensor& image, int64_t size, c10::ArrayRef<double> mean,
                             c10::ArrayRef<double> std) {
  return normalize(resize_center_crop(image, size), mean, std);
}

at::Tensor preprocess_uint8(const at::Tensor& image_u8, int64_t size, c10::ArrayRef<double> mean,
                            c10::ArrayRef<double> std) {
  TORCH_CHECK(image_u8.dim() == 3 && (image_u8.size(0) == 3 || image_u8.size(0) == 4) &&
                  image_u8.scalar_type() == at::kByte,
              "preprocess_uint8: expected (3, H, W) or (4, H, W) uint8, got ", shape_str(image_u8.sizes()), " ",
              image_u8.scalar_type());
  at::Tensor x = image_u8.unsqueeze(0).to(at::kInt);  // (1, C, H, W) in [0, 255]
  const bool rgba = x.size(1) == 4;
  if (rgba) {  // PIL's RGBA → RGBa: c * a / 255 rounded in integers
    at::Tensor a = x.narrow(1, 3, 1);
    at::Tensor t = x.narrow(1, 0, 3) * a + 128;
    x = at::cat({(t + t.bitwise_right_shift(8)).bitwise_right_shift(8), a}, 1);
  }
  // PIL resamples 8-bit images horizontally, rounds to 8 bits, then vertically; do the same.
  at::Tensor f = x.to(at::kFloat);
  auto [h, w] = resized_shortest(f.size(2), f.size(3), size);
  f = bicubic_aa(f, f.size(2), w).round().clamp(0, 255);
  f = bicubic_aa(f, h, w).round().clamp(0, 255);
  if (rgba) {  // RGBa → RGBA: 255 * c / a in integers, unchanged where a is 0 or 255; then drop alpha
    at::Tensor c = f.narrow(1, 0, 3).to(at::kInt), a = f.narrow(1, 3, 1).to(at::kInt);
    at::Tensor un = (255 * c).div(a.clamp_min(1), "floor").clamp(0, 255);
    f = at::where(a.eq(0).logical_or(a.eq(255)), c, un).to(at::kFloat);
  }
  f = center_crop(f, size).div(255.0);  // (1, 3, S, S) in [0, 1]
  return normalize(f.squeeze(0), mean, std).contiguous();
}

at::Tensor preprocess_file(const std::filesystem::path& path, int64_t size, c10::ArrayRef<double> mean,
                           c10::ArrayRef<double> std) {
  return preprocess_uint8(read_image(path, /*keep_alpha=*/true), size, mean, std);
}

}  // namespace clipguide::clipnet
