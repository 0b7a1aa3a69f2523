// FusedAdamW (see fused_adamw.h). PyTorch's _fused_adamw increments the step counts before the kernel and
// the kernel reads them as float tensors; here the counts stay AdamWParamState's integers and the kernel
// gets float copies, so a checkpoint is the same whichever step() wrote it.
#include "clipnet/train/fused_adamw.h"

#include "core/error.h"

#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <vector>

namespace clipguide::train {

at::Tensor FusedAdamW::step(LossClosure closure) {
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  if (fused_unavailable_) {
    AdamW::step();
    return loss;
  }
  at::NoGradGuard no_grad;
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (o.amsgrad()) throw Error("FusedAdamW: amsgrad is not supported");
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    std::vector<torch::optim::AdamWParamState*> stepped;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (p.grad().is_sparse()) throw Error("FusedAdamW: sparse gradients are not supported");
      auto& slot = state()[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(0);
        s->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        s->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<torch::optim::AdamWParamState&>(*slot);
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(s.exp_avg());
      exp_avg_sqs.push_back(s.exp_avg_sq());
      steps.push_back(at::full({}, static_cast<double>(s.step() + 1), p.options().dtype(at::kFloat)));
      stepped.push_back(&s);
    }
    if (params.empty()) continue;
    try {
      at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, o.lr(),
                        std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(), o.eps(),
                        /*amsgrad=*/false, /*maximize=*/false);
    } catch (const c10::NotImplementedError&) {
      // No fused kernel for this device in this LibTorch: the first group fails before changing anything.
      fused_unavailable_ = true;
      AdamW::step();
      return loss;
    }
    for (auto* s : stepped) s->step(s->step() + 1);
  }
  return loss;
}

}  // namespace clipguide::train
