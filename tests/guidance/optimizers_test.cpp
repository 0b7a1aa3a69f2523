// Tests for guidance/optimizers: Adamax and RAdam against torch.optim, DiffGrad and AdamP against
// torch_optimizer (tests/reference/optimizers.py: 12 float64 steps on fixed gradients, AdamP's projection
// both taken and not), an exact resume through save/load, and make_optimizer's names.
#include "guidance/optimizers.h"

#include "core/error.h"
#include "core/io/safetensors.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstdio>
#include <sstream>

namespace clipguide::guidance {
namespace {

constexpr int kSteps = 12;
const char* const kParams[] = {"a", "b", "c"};

clipguide::TensorMap reference() {
  return clipguide::read_safetensors(test::fixture_dir("optimizers") / "optimizers.safetensors").tensors;
}

// As the fixture builds them: lr 0.05, weight decay 0.01 (DiffGrad: generate.py's eps 1e-9, wd 1e-9).
std::unique_ptr<torch::optim::Optimizer> make(const std::string& name, std::vector<at::Tensor> params) {
  if (name == "diffgrad") return make_optimizer(name, std::move(params), 0.05);
  return make_optimizer(name, std::move(params), 0.05, 0.01);
}

std::vector<at::Tensor> initial(const clipguide::TensorMap& ref) {
  std::vector<at::Tensor> params;
  for (const char* k : kParams) params.push_back(ref.at(std::string("init_") + k).clone().requires_grad_());
  return params;
}

void run_steps(torch::optim::Optimizer& opt, std::vector<at::Tensor>& params, const clipguide::TensorMap& ref,
               int from, int to) {
  for (int t = from; t < to; ++t) {
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].mutable_grad() = ref.at("grad_" + std::string(kParams[i]) + "_" + std::to_string(t)).clone();
    }
    opt.step();
  }
}

class OptimizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(OptimizerParity, MatchesTheReferenceOverTwelveSteps) {
  const auto ref = reference();
  auto params = initial(ref);
  auto opt = make(GetParam(), params);
  run_steps(*opt, params, ref, 0, kSteps);
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& want = ref.at(GetParam() + "_" + kParams[i]);
    std::printf("%s %s: max abs diff %.3g (moved %.3g)\n", GetParam().c_str(), kParams[i],
                test::max_abs_diff(params[i], want), test::max_abs_diff(want, ref.at(std::string("init_") + kParams[i])));
    EXPECT_TENSOR_CLOSE(params[i], want, 1e-12, 1e-10);
  }
}

TEST_P(OptimizerParity, ResumesExactlyFromSavedState) {
  const auto ref = reference();
  auto params = initial(ref);
  auto opt = make(GetParam(), params);
  run_steps(*opt, params, ref, 0, kSteps / 2);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TENSOR_CLOSE(params[i], ref.at(GetParam() + "_" + kParams[i] + "_half"), 1e-12, 1e-10);
  }
  std::ostringstream bytes;
  {
    torch::serialize::OutputArchive archive;
    opt->save(archive);
    archive.save_to(bytes);
  }
  // A fresh optimiser on copies of the parameters, given the saved state, goes on as the first would have.
  std::vector<at::Tensor> copies;
  for (auto& p : params) copies.push_back(p.detach().clone().requires_grad_());
  auto resumed = make(GetParam(), copies);
  std::istringstream in(bytes.str());
  torch::serialize::InputArchive archive;
  archive.load_from(in);
  resumed->load(archive);
  run_steps(*resumed, copies, ref, kSteps / 2, kSteps);
  for (size_t i = 0; i < copies.size(); ++i) {
    EXPECT_TENSOR_CLOSE(copies[i], ref.at(GetParam() + "_" + kParams[i]), 1e-12, 1e-10);
  }
}

INSTANTIATE_TEST_SUITE_P(Family, OptimizerParity, ::testing::Values("adamax", "radam", "diffgrad", "adamp"),
                         [](const auto& info) { return info.param; });

TEST(MakeOptimizer, EveryNameBuildsAndUnknownNamesListTheKnown) {
  for (const auto& name : optimizer_names()) {
    auto opt = make_optimizer(name, {at::zeros({2, 2}, at::kFloat).requires_grad_()}, 0.1);
    EXPECT_EQ(opt->param_groups().size(), 1u) << name;
    opt->param_groups()[0].options().set_lr(0.2);
    EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), 0.2) << name;
  }
  const std::string message = test::error_of([] { make_optimizer("Adamm", {at::zeros({1}).requires_grad_()}, 0.1); });
  EXPECT_NE(message.find("'Adamm'"), std::string::npos) << message;
  EXPECT_NE(message.find("diffgrad"), std::string::npos) << message;
  EXPECT_THROW(make_optimizer("radam", {at::zeros({1}).requires_grad_()}, -1.0), Error);
}

}  // namespace
}  // namespace clipguide::guidance
