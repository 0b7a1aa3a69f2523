// Adamax, RAdam, DiffGrad, AdamP and the by-name factory of every guidance optimiser (see optimizers.h).
// Each update follows its reference line by line (the order of operations is kept, so float rounding
// matches); comments name the reference's variables where ours differ.
#include "guidance/optimizers.h"

#include "core/error.h"

#include <ATen/ops/abs.h>
#include <ATen/ops/cosine_similarity.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include <cmath>

namespace clipguide::guidance {

void MomentOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta1);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta2);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(delta);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(wd_ratio);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(nesterov);
}

void MomentOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, beta1);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, beta2);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, delta);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, wd_ratio);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, nesterov);
}

void MomentParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(previous);
}

void MomentParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(at::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(at::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(at::Tensor, previous);
}

MomentOptimizer::MomentOptimizer(std::vector<at::Tensor> params, MomentOptions options, MomentUpdate update)
    : Optimizer({torch::optim::OptimizerParamGroup(std::move(params))}, std::make_unique<MomentOptions>(options)),
      update_(update) {
  if (!update_) throw Error("optimiser: no update rule");
  if (!(options.lr() >= 0)) throw Error("optimiser: learning rate must be >= 0, got " + std::to_string(options.lr()));
  if (!(options.beta1() >= 0 && options.beta1() < 1 && options.beta2() >= 0 && options.beta2() < 1)) {
    throw Error("optimiser: betas must be in [0, 1)");
  }
  if (!(options.eps() >= 0) || !(options.weight_decay() >= 0)) throw Error("optimiser: eps and weight decay must be >= 0");
}

at::Tensor MomentOptimizer::step(LossClosure closure) {
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  at::NoGradGuard no_grad;
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const MomentOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (p.grad().is_sparse()) throw Error("optimiser: sparse gradients are not supported");
      auto& slot = state()[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto s = std::make_unique<MomentParamState>();
        s->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        s->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<MomentParamState&>(*slot);
      s.step(s.step() + 1);
      update_(p, p.grad(), s, o);
    }
  }
  return loss;
}

void MomentOptimizer::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<MomentParamState, MomentOptions>(archive, *this);
}

void MomentOptimizer::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<MomentParamState, MomentOptions>(archive, *this);
}

namespace {

// torch.optim.Adamax: exp_inf is kept in exp_avg_sq.
void adamax_update(at::Tensor& p, const at::Tensor& g, MomentParamState& s, const MomentOptions& o) {
  at::Tensor grad = o.weight_decay() != 0 ? g.add(p, o.weight_decay()) : g;
  s.exp_avg().lerp_(grad, 1 - o.beta1());
  at::maximum_out(s.exp_avg_sq(), s.exp_avg_sq().mul_(o.beta2()), grad.abs().add_(o.eps()));
  const double clr = o.lr() / (1 - std::pow(o.beta1(), static_cast<double>(s.step())));
  p.addcdiv_(s.exp_avg(), s.exp_avg_sq(), -clr);
}

// torch.optim.RAdam (decoupled_weight_decay=False): Adam with the variance rectification of Liu et al.,
// plain momentum SGD while the variance estimate is unreliable (rho_t <= 5).
void radam_update(at::Tensor& p, const at::Tensor& g, MomentParamState& s, const MomentOptions& o) {
  at::Tensor grad = o.weight_decay() != 0 ? g.add(p, o.weight_decay()) : g;
  const double t = static_cast<double>(s.step());
  s.exp_avg().lerp_(grad, 1 - o.beta1());
  s.exp_avg_sq().mul_(o.beta2()).addcmul_(grad, grad, 1 - o.beta2());
  const double bias_correction1 = 1 - std::pow(o.beta1(), t);
  const double bias_correction2 = 1 - std::pow(o.beta2(), t);
  at::Tensor corrected = s.exp_avg() / bias_correction1;
  const double rho_inf = 2 / (1 - o.beta2()) - 1;
  const double rho_t = rho_inf - 2 * t * std::pow(o.beta2(), t) / bias_correction2;
  if (rho_t > 5.0) {
    const double rect = std::sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t));
    at::Tensor adaptive_lr = std::sqrt(bias_correction2) / s.exp_avg_sq().sqrt().add_(o.eps());
    p.add_(corrected * o.lr() * adaptive_lr * rect, -1.0);
  } else {
    p.add_(corrected * o.lr(), -1.0);
  }
}

// torch_optimizer.DiffGrad: Adam whose step is damped by the friction sigmoid(|g_{t-1} - g_t|).
void diffgrad_update(at::Tensor& p, const at::Tensor& g, MomentParamState& s, const MomentOptions& o) {
  at::Tensor grad = o.weight_decay() != 0 ? g.add(p, o.weight_decay()) : g;
  if (!s.previous().defined()) s.previous(at::zeros_like(p, at::MemoryFormat::Preserve));
  const double t = static_cast<double>(s.step());
  s.exp_avg().mul_(o.beta1()).add_(grad, 1 - o.beta1());
  s.exp_avg_sq().mul_(o.beta2()).addcmul_(grad, grad, 1 - o.beta2());
  at::Tensor denom = s.exp_avg_sq().sqrt().add_(o.eps());
  const double bias_correction1 = 1 - std::pow(o.beta1(), t);
  const double bias_correction2 = 1 - std::pow(o.beta2(), t);
  at::Tensor dfc = at::sigmoid(at::abs(s.previous() - grad));  // the reference's 1 / (1 + exp(-diff))
  s.previous(grad.clone());
  const double step_size = o.lr() * std::sqrt(bias_correction2) / bias_correction1;
  p.addcdiv_(s.exp_avg() * dfc, denom, -step_size);
}


// AdamP's scale-invariance test and projection: for the per-channel view (rows of p.view(C, -1)) and then
// the whole-layer view, when every |cos(grad, p)| is below delta / sqrt(row length), the update's radial part
// is removed and the weight decay is scaled by wd_ratio.
double adamp_projection(const at::Tensor& p, const at::Tensor& grad, at::Tensor& perturb, const MomentOptions& o) {
  const auto view_channels = [](const at::Tensor& x) { return x.reshape({x.size(0), -1}); };
  const auto view_layer = [](const at::Tensor& x) { return x.reshape({1, -1}); };
  std::vector<int64_t> expand_size(p.dim(), 1);
  expand_size[0] = -1;
  for (auto view : {+view_channels, +view_layer}) {
    at::Tensor cosine = at::cosine_similarity(view(grad), view(p), 1, o.eps()).abs_();
    if (cosine.max().item<double>() < o.delta() / std::sqrt(static_cast<double>(view(p).size(1)))) {
      at::Tensor p_n = p / view(p).norm(2, {1}).view(expand_size).add_(o.eps());
      perturb -= p_n * view(p_n * perturb).sum({1}).view(expand_size);
      return o.wd_ratio();
    }
  }
  return 1.0;
}


// torch_optimizer.AdamP: Adam whose update of scale-invariant weights (rows orthogonal to their gradient)
// is projected onto the tangent space, with decoupled weight decay.
void adamp_update(at::Tensor& p, const at::Tensor& grad, MomentParamState& s, const MomentOptions& o) {
  const double t = static_cast<double>(s.step());
  s.exp_avg().mul_(o.beta1()).add_(grad, 1 - o.beta1());
  s.exp_avg_sq().mul_(o.beta2()).addcmul_(grad, grad, 1 - o.beta2());
  const double bias_correction1 = 1 - std::pow(o.beta1(), t);
  const double bias_correction2 = 1 - std::pow(o.beta2(), t);
  at::Tensor denom = (s.exp_avg_sq().sqrt() / std::sqrt(bias_correction2)).add_(o.eps());
  const double step_size = o.lr() / bias_correction1;
  at::Tensor perturb = o.nesterov() ? (o.beta1() * s.exp_avg() + (1 - o.beta1()) * grad) / denom : s.exp_avg() / denom;
  double wd_ratio = 1.0;
  if (p.dim() > 1) wd_ratio = adamp_projection(p, grad, perturb, o);
  if (o.weight_decay() > 0) p.mul_(1 - o.lr() * o.weight_decay() * wd_ratio);
  p.add_(perturb, -step_size);
}

}  // namespace

std::vector<std::string> optimizer_names() {
  return {"adam", "adamw", "sgd", "rmsprop", "adagrad", "adamax", "radam", "diffgrad", "adamp"};
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name, std::vector<at::Tensor> params,
                                                        double lr, double weight_decay, double momentum) {
  namespace optim = torch::optim;
  if (name == "adam") return std::make_unique<optim::Adam>(params, optim::AdamOptions(lr).weight_decay(weight_decay));
  if (name == "adamw") return std::make_unique<optim::AdamW>(params, optim::AdamWOptions(lr).weight_decay(weight_decay));
  if (name == "sgd") {
    return std::make_unique<optim::SGD>(params, optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay));
  }
  if (name == "rmsprop") {
    return std::make_unique<optim::RMSprop>(params,
                                            optim::RMSpropOptions(lr).momentum(momentum).weight_decay(weight_decay));
  }
  if (name == "adagrad") {
    return std::make_unique<optim::Adagrad>(params, optim::AdagradOptions(lr).weight_decay(weight_decay));
  }
  auto family = [&](MomentOptions options, MomentUpdate update) {
    return std::make_unique<MomentOptimizer>(params, options.weight_decay(weight_decay), update);
  };
  if (name == "adamax") return family(MomentOptions(lr), adamax_update);
  if (name == "radam") return family(MomentOptions(lr), radam_update);
  if (name == "diffgrad") {  // generate.py: DiffGrad([z], lr=opt_lr, eps=1e-9, weight_decay=1e-9)
    return std::make_unique<MomentOptimizer>(
        params, MomentOptions(lr).eps(1e-9).weight_decay(weight_decay > 0 ? weight_decay : 1e-9), diffgrad_update);
  }
  if (name == "adamp") return family(MomentOptions(lr), adamp_update);
  std::string known;
  for (const auto& n : optimizer_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown optimizer '" + name + "' (known: " + known + ")");
}

}  // namespace clipguide::guidance
