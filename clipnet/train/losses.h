// Contrastive pretraining losses: CLIP's symmetric InfoNCE over the gathered batch (optionally "local":
// each rank's rows against everyone's columns) and SigLIP's pairwise sigmoid loss with a learnable bias.
// ref: mlfoundations/open_clip@v3.3.0 src/open_clip/loss.py (gather_features, ClipLoss, SigLipLoss)
// Shapes: B per-rank batch, W world size, N = W*B gathered batch, E embedding width.
#pragma once

#include "clipnet/train/distributed.h"

#include <ATen/core/Tensor.h>

#include <cmath>

namespace clipguide::train {

// Largest logit scale: exp(scale parameter) is clamped at 100 (ln 100 on the parameter), as open_clip.
constexpr double kMaxLogLogitScale = 4.605170185988092;  // ln(100)

// Loss settings (open_clip's flags).
struct ContrastiveLossOptions {
  bool siglip = false;            // sigmoid loss (needs a logit bias) instead of softmax InfoNCE
  bool local_loss = false;        // CLIP: local rows vs all columns (B x N logits) instead of N x N on every rank
  bool gather_with_grad = false;  // gathered features carry gradients to their own ranks
};

// image, text: (B, E) unit rows; logit_scale: () the *exponentiated* scale (open_clip passes logit_scale.exp()).
// Single process (comm world size 1): open_clip's ClipLoss. Multi-process: gathers features across ranks
// like open_clip's gather_features; the returned loss is this rank's (with local_loss it differs between
// ranks and their mean is the global loss).
at::Tensor clip_loss(const at::Tensor& image, const at::Tensor& text, const at::Tensor& logit_scale,
                     Communicator& comm, const ContrastiveLossOptions& options = {});

// SigLIP: -sum logsigmoid(label * (scale * image @ text^T + bias)) / B, label +1 on matching pairs and -1
// elsewhere (open_clip's SigLipLoss). Multi-process: this rank's images against every rank's texts, labels
// -1 off this rank's block (open_clip's dist_impl="gather"), normalised by this rank's B. bias: () learnable.
at::Tensor siglip_loss(const at::Tensor& image, const at::Tensor& text, const at::Tensor& logit_scale,
                       const at::Tensor& logit_bias, Communicator& comm, const ContrastiveLossOptions& options = {});

// Dispatches on options.siglip (logit_bias is ignored, and may be undefined, for CLIP).
at::Tensor contrastive_loss(const at::Tensor& image, const at::Tensor& text, const at::Tensor& logit_scale,
                            const at::Tensor& logit_bias, Communicator& comm, const ContrastiveLossOptions& options);

// In place, without autograd: scale_param = clamp(scale_param, 0, ln 100), as open_clip after each step.
void clamp_logit_scale_(at::Tensor& scale_param);

}  // namespace clipguide::train
