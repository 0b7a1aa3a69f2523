// CLIP and SigLIP losses over (possibly gathered) features. See losses.h.
// ref: mlfoundations/open_clip@v3.3.0 src/open_clip/loss.py (gather_features, ClipLoss, SigLipLoss)
// Shapes: B per-rank batch, W world size, N = W*B, E embedding width.
#include "clipnet/train/losses.h"

#include "core/error.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/log_sigmoid.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <c10/core/GradMode.h>

namespace clipguide::train {
namespace {

void check_features(const at::Tensor& image, const at::Tensor& text, const at::Tensor& logit_scale) {
  if (image.dim() != 2 || text.sizes() != image.sizes())
    throw Error("contrastive loss: image and text features must both be (B, E); got image " +
                shape_str(image.sizes()) + ", text " + shape_str(text.sizes()));
  if (logit_scale.numel() != 1)
    throw Error("contrastive loss: logit_scale must be a scalar; got " + shape_str(logit_scale.sizes()));
}

}  // namespace

at::Tensor clip_loss(const at::Tensor& image, const at::Tensor& text, const at::Tensor& logit_scale,
                     Communicator& comm, const ContrastiveLossOptions& options) {
  check_features(image, text, logit_scale);
  const int64_t batch = image.size(0);
  at::Tensor logits_per_image, logits_per_text, labels;
  if (comm.world_size() == 1) {
    logits_per_image = logit_scale * at::matmul(image, text.t());  // (B, B)
    logits_per_text = logit_scale * at::matmul(text, image.t());
    labels = at::arange(batch, image.options().dtype(at::kLong));
  } else {
    at::Tensor all_image = gather_rows(comm, image, options.gather_with_grad);  // (N, E)
    at::Tensor all_text = gather_rows(comm, text, options.gather_with_grad);    // (N, E)
    if (options.local_loss) {
      // open_clip keeps no graph in the gathered features for a local loss without gather_with_grad.
      if (!options.gather_with_grad) all_image = all_image.detach(), all_text = all_text.detach();
      logits_per_image = logit_scale * at::matmul(image, all_text.t());  // (B, N)
      logits_per_text = logit_scale * at::matmul(text, all_image.t());   // (B, N)
      labels = at::arange(batch, image.options().dtype(at::kLong)) + batch * comm.rank();
    } else {
      logits_per_image = logit_scale * at::matmul(all_image, all_text.t());  // (N, N)
      logits_per_text = logits_per_image.t();
      labels = at::arange(all_image.size(0), image.options().dtype(at::kLong));
    }
  }
  return (at::cross_entropy_loss(logits_per_image, labels) + at::cross_entropy_loss(logits_per_text, labels)) / 2;
}

at::Tensor siglip_loss(const at::Tensor& image, const at::Tensor& text, const at::Tensor& logit_scale,
                       const at::Tensor& logit_bias, Communicator& comm, const ContrastiveLossOptions& options) {
  check_features(image, text, logit_scale);
  if (!logit_bias.defined() || logit_bias.numel() != 1) throw Error("siglip loss: needs a scalar logit_bias");
  const int64_t batch = image.size(0);
  const at::Tensor all_text = comm.world_size() == 1 ? text : gather_rows(comm, text, options.gather_with_grad);
  const at::Tensor logits = logit_scale * at::matmul(image, all_text.t()) + logit_bias;  // (B, N)
  // labels: +1 on this rank's diagonal block, -1 elsewhere (negatives only against other ranks' texts).
  at::Tensor labels = -at::ones({batch, all_text.size(0)}, image.options());  // (B, N)
  labels.narrow(1, batch * comm.rank(), batch).add_(at::eye(batch, image.options()), 2.0);
  return -at::log_sigmoid(labels * logits).sum() / static_cast<double>(batch);
}

at::Tensor contrastive_loss(const at::Tensor& image, const at::Tensor& text, const at::Tensor& logit_scale,
                            const at::Tensor& logit_bias, Communicator& comm, const ContrastiveLossOptions& options) {
  return options.siglip ? siglip_loss(image, text, logit_scale, logit_bias, comm, options)
                        : clip_loss(image, text, logit_scale, comm, options);
}

void clamp_logit_scale_(at::Tensor& scale_param) {
  c10::NoGradGuard no_grad;
  scale_param.clamp_(0, kMaxLogLogitScale);
}

}  // namespace clipguide::train
