// The optimisers VQGAN+CLIP users pick that LibTorch lacks (generate.py's -opt): Adamax and RAdam as
// torch.optim has them, DiffGrad and AdamP as torch_optimizer 0.3.0 has them. They are torch::optim
// optimisers (param groups, set_lr, save/load), so GuideLoop treats them like LibTorch's own.
// One options type and one state type serve the whole family: every member keeps Adam-style moments.
// ref: pytorch/pytorch@v2.11.0 torch/optim/{adamax,radam}.py (single-tensor paths);
//      jettify/pytorch-optimizer@v0.3.0 torch_optimizer/{diffgrad,adamp}.py
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace clipguide::guidance {

struct MomentOptions : public torch::optim::OptimizerCloneableOptions<MomentOptions> {
  MomentOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: implicit as LibTorch's options are
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.0;  // Adamax, RAdam, DiffGrad: L2 on the gradient; AdamP: decoupled
  TORCH_ARG(double, delta) = 0.1;         // AdamP: cosine threshold for the scale-invariant projection
  TORCH_ARG(double, wd_ratio) = 0.1;      // AdamP: weight decay factor where the projection applies
  TORCH_ARG(bool, nesterov) = false;      // AdamP

 public:  // TORCH_ARG leaves the section private
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

struct MomentParamState : public torch::optim::OptimizerCloneableParamState<MomentParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(at::Tensor, exp_avg);     // first moment
  TORCH_ARG(at::Tensor, exp_avg_sq);  // second moment (Adamax: the exponentially weighted infinity norm)
  TORCH_ARG(at::Tensor, previous);    // DiffGrad: the previous step's gradient

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

// One parameter's update of a family member, under no-grad; state.step() is already this step's count
// (1 on the first). The rules (Adamax, RAdam, DiffGrad, AdamP) live in optimizers.cpp.
using MomentUpdate = void (*)(at::Tensor& param, const at::Tensor& grad, MomentParamState& state,
                              const MomentOptions& options);

// The family's common part: state creation, the step loop, save/load; `update` is the member's rule.
class MomentOptimizer final : public torch::optim::Optimizer {
 public:
  MomentOptimizer(std::vector<at::Tensor> params, MomentOptions options, MomentUpdate update);
  at::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  MomentUpdate update_;
};

// Every optimiser a guidance run can use, by name (lower case): LibTorch's adam, adamw, sgd, rmsprop,
// adagrad and the family above: adamax, radam, diffgrad, adamp. `momentum` goes to sgd and rmsprop. An unknown name is a clipguide::Error
// listing the known ones. DiffGrad takes generate.py's settings (eps 1e-9, weight decay 1e-9) when
// weight_decay is 0.
std::vector<std::string> optimizer_names();
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name, std::vector<at::Tensor> params,
                                                        double lr, double weight_decay = 0.0, double momentum = 0.0);

}  // namespace clipguide::guidance
