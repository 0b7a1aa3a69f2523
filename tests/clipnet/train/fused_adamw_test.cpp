// Tests for clipnet/train/fused_adamw: the fused update equals torch::optim::AdamW's over several steps
// (two parameter groups, one with weight decay, a parameter without a gradient, a learning-rate change),
// its state serialises as AdamW's, and amsgrad is a clear error.
#include "clipnet/train/fused_adamw.h"

#include "core/error.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <memory>
#include <vector>

namespace clipguide::train {
namespace {

std::vector<at::Tensor> make_params(uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  return {at::randn({300, 40}).requires_grad_(), at::randn({40}).requires_grad_(), at::randn({7, 3, 3}).requires_grad_(),
          at::randn({5}).requires_grad_()};
}

template <class Optimizer>
std::unique_ptr<Optimizer> make_optimizer(const std::vector<at::Tensor>& p) {
  auto options = [](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(2e-2).betas({0.9, 0.98}).eps(1e-6).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<at::Tensor>{p[0], p[2]}, options(0.2));
  groups.emplace_back(std::vector<at::Tensor>{p[1], p[3]}, options(0.0));
  return std::make_unique<Optimizer>(groups, torch::optim::AdamWOptions(2e-2));
}

// Gradients of a fixed function of the parameters; p[3] gets none (skipped by both optimisers).
void backward(const std::vector<at::Tensor>& p) {
  for (const auto& t : p) t.mutable_grad() = at::Tensor();
  ((p[0] * p[0]).sum() + (p[1].sin()).sum() * 3 + (p[2] * p[2] * p[2]).mean()).backward();
}

TEST(FusedAdamW, MatchesAdamWStepForStep) {
  auto a = make_params(1), b = make_params(1);
  auto reference = make_optimizer<torch::optim::AdamW>(a);
  auto fused = make_optimizer<FusedAdamW>(b);
  for (int step = 0; step < 12; ++step) {
    if (step == 6) {  // a schedule changes the learning rate between steps
      for (auto* opt : std::vector<torch::optim::Optimizer*>{reference.get(), fused.get()}) {
        for (auto& g : opt->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(5e-3);
      }
    }
    backward(a);
    backward(b);
    reference->step();
    fused->step();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("parameter " + std::to_string(i));
    EXPECT_TENSOR_CLOSE(b[i], a[i], 1e-6, 1e-6);
  }
  EXPECT_TRUE(b[3].equal(make_params(1)[3])) << "a parameter without a gradient does not move";
  // Same state as AdamW keeps: step counts and moments.
  for (size_t i : {0, 1, 2}) {
    const auto& ra = static_cast<const torch::optim::AdamWParamState&>(*reference->state().at(a[i].unsafeGetTensorImpl()));
    const auto& fb = static_cast<const torch::optim::AdamWParamState&>(*fused->state().at(b[i].unsafeGetTensorImpl()));
    EXPECT_EQ(fb.step(), ra.step());
    EXPECT_TENSOR_CLOSE(fb.exp_avg(), ra.exp_avg(), 1e-6, 1e-6);
    EXPECT_TENSOR_CLOSE(fb.exp_avg_sq(), ra.exp_avg_sq(), 1e-6, 1e-6);
  }
}

// The state written by save() loads into another FusedAdamW, which then steps exactly as the original.
TEST(FusedAdamW, SavedStateResumesExactly) {
  auto a = make_params(2), b = make_params(2);
  auto first = make_optimizer<FusedAdamW>(a);
  for (int step = 0; step < 3; ++step) backward(a), first->step();
  torch::serialize::OutputArchive out;
  first->save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  for (size_t i = 0; i < a.size(); ++i) b[i].detach().copy_(a[i].detach());
  auto second = make_optimizer<FusedAdamW>(b);
  torch::serialize::InputArchive in;
  std::istringstream in_bytes(bytes.str());
  in.load_from(in_bytes);
  second->load(in);
  backward(a), first->step();
  backward(b), second->step();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(b[i].equal(a[i])) << "parameter " << i;
}

TEST(FusedAdamW, AmsgradIsAnError) {
  auto p = make_params(3);
  FusedAdamW opt(std::vector<at::Tensor>{p[0]}, torch::optim::AdamWOptions(1e-3).amsgrad(true));
  backward(p);
  EXPECT_NE(test::error_of([&] { opt.step(); }).find("amsgrad is not supported"), std::string::npos);
}

}  // namespace
}  // namespace clipguide::train
