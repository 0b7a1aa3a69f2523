// CLIP's image preprocessing: shorter side resized to the model resolution with antialiased bicubic,
// centre crop, per-channel mean/std. Two paths: from an image file (PIL-compatible, for embedding) and a
// differentiable one on tensors in [0, 1] (for guidance, where gradients must reach the pixels).
// Shapes: B batch, H/W input height/width, S the model's input size.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <array>
#include <filesystem>

namespace clipguide::clipnet {

// OpenAI's constants; a model's config carries its own (ClipConfig::preprocess), use those.
inline constexpr std::array<double, 3> kOpenAiMean = {0.48145466, 0.4578275, 0.40821073};
inline constexpr std::array<double, 3> kOpenAiStd = {0.26862954, 0.26130258, 0.27577711};

// Output size of torchvision's Resize(size) on an (h, w) image: shorter side → size, longer side
// → int(size * long / short) (truncated, as torchvision does).
std::array<int64_t, 2> resized_shortest(int64_t h, int64_t w, int64_t size);

// (B, 3, H, W) or (3, H, W) float → same rank with spatial size (S, S): shortest-side antialiased
// bicubic resize then centre crop (torchvision's rounding of the crop offset). Differentiable.
at::Tensor resize_center_crop(const at::Tensor& image, int64_t size);

// (image - mean) / std per channel on (B, 3, H, W) or (3, H, W). Differentiable.
at::Tensor normalize(const at::Tensor& image, c10::ArrayRef<double> mean, c10::ArrayRef<double> std);

// Guidance path: (B, 3, H, W) in [0, 1] → (B, 3, S, S) normalised, differentiable.
at::Tensor preprocess_tensor(const at::Tensor& image, int64_t size, c10::ArrayRef<double> mean,
                             c10::ArrayRef<double> std);

// File path, as openai-clip's preprocess (PIL): (3, H, W) uint8 RGB or (4, H, W) RGBA → (3, S, S) float
// normalised. Like PIL, the resize runs in two 8-bit passes (horizontal, then vertical) with rounding, and
// RGBA is resized premultiplied then unpremultiplied before alpha is dropped (openai-clip resizes before
// converting to RGB). Results agree with the Python reference to one grey level: Pillow sometimes runs
// the vertical pass first, which changes the rounding of ~20% of pixels by one level; palette images,
// which PIL resizes with nearest-neighbour, are resized bicubically here.
at::Tensor preprocess_uint8(const at::Tensor& image_u8, int64_t size, c10::ArrayRef<double> mean,
                            c10::ArrayRef<double> std);

// read_image + preprocess_uint8.
at::Tensor preprocess_file(const std::filesystem::path& path, int64_t size, c10::ArrayRef<double> mean,
                           c10::ArrayRef<double> std);

}  // namespace clipguide::clipnet
