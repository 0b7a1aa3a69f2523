// CLIP guidance for diffusion samplers (see sampler_guidance.h).
// ref: alembics/disco-diffusion Disco_Diffusion.ipynb v5 (cond_fn, tv_loss, range_loss, MakeCutoutsDango)
// Shapes: B images, H x W pixels.
#include "guidance/sampler_guidance.h"

#include "core/error.h"

#include <ATen/ops/nan_to_num.h>
#include <ATen/ops/pad.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

namespace clipguide::guidance {
namespace {

constexpr size_t kScheduleLength = 1000;

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

bool parse_number(const std::string& text, double& value) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  char* end = nullptr;
  value = std::strtod(t.c_str(), &end);
  return *end == '\0' && std::isfinite(value);
}

void check_options(const SamplerGuidanceOptions& o) {
  if (o.cutn_batches < 1) throw Error("sampler guidance: cutn_batches must be >= 1, got " + std::to_string(o.cutn_batches));
  for (double v : o.cut_overview.values())
    if (v < 0) throw Error("sampler guidance: cut_overview has a negative entry");
  for (double v : o.cut_innercut.values())
    if (v < 0) throw Error("sampler guidance: cut_innercut has a negative entry");
  for (double v : o.cut_ic_pow.values())
    if (!(v > 0)) throw Error("sampler guidance: cut_ic_pow entries must be > 0");
  if (!(o.clamp_max >= 0)) throw Error("sampler guidance: clamp_max must be >= 0 (0: off)");
  if (o.init_scale != 0 && !o.init_image.defined()) {
    throw Error("sampler guidance: init_scale is " + std::to_string(o.init_scale) + " but there is no init_image");
  }
}

}  // namespace

StepSchedule::StepSchedule(double constant) : values_(kScheduleLength, constant) {}

StepSchedule StepSchedule::parse(const std::string& text, const std::string& name) {
  const std::string expected = name + ": expected a schedule such as [12]*400+[4]*600 (1000 entries) or a number, got '" + text + "'";
  double constant = 0;
  if (parse_number(text, constant)) return StepSchedule(constant);
  StepSchedule schedule;
  schedule.values_.clear();
  size_t pos = 0;
  const std::string s = trim(text);
  if (s.empty()) throw Error(expected);
  while (pos < s.size()) {
    // One term: [v, v, ...] optionally followed by * count.
    while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
    if (pos >= s.size() || s[pos] != '[') throw Error(expected);
    const size_t close = s.find(']', pos);
    if (close == std::string::npos) throw Error(expected);
    std::vector<double> items;
    std::string body = s.substr(pos + 1, close - pos - 1);
    size_t start = 0;
    for (;;) {
      const size_t comma = body.find(',', start);
      double v = 0;
      if (!parse_number(body.substr(start, comma == std::string::npos ? std::string::npos : comma - start), v)) {
        throw Error(expected);
      }
      items.push_back(v);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    pos = close + 1;
    size_t repeat = 1;
    const size_t next_plus = s.find('+', pos);
    const std::string tail = trim(s.substr(pos, next_plus == std::string::npos ? std::string::npos : next_plus - pos));
    if (!tail.empty()) {
      double count = 0;
      if (tail[0] != '*' || !parse_number(tail.substr(1), count) || count < 1 || count != std::floor(count) ||
          count > static_cast<double>(kScheduleLength)) {
        throw Error(expected);
      }
      repeat = static_cast<size_t>(count);
    }
    for (size_t r = 0; r < repeat && schedule.values_.size() <= kScheduleLength; ++r) {
      schedule.values_.insert(schedule.values_.end(), items.begin(), items.end());
    }
    if (next_plus == std::string::npos) break;
    pos = next_plus + 1;
    if (trim(s.substr(pos)).empty()) throw Error(expected);  // a trailing '+'
  }
  if (schedule.values_.size() != kScheduleLength) {
    throw Error(name + ": the schedule '" + text + "' has " +
                (schedule.values_.size() > kScheduleLength ? "more than 1000" : std::to_string(schedule.values_.size())) +
                " entries, expected 1000 (one per thousandth of the run)");
  }
  return schedule;
}

double StepSchedule::at(double t) const {
  // The small term keeps t = k / 1000 on entry 1000 - k when (1 - t) * 1000 rounds just below it.
  const auto index = static_cast<int64_t>(std::floor((1.0 - t) * static_cast<double>(kScheduleLength) + 1e-6));
  return values_[static_cast<size_t>(std::clamp<int64_t>(index, 0, kScheduleLength - 1))];
}

at::Tensor disco_tv_loss(const at::Tensor& x) {
  const at::Tensor p = at::pad(x, {0, 1, 0, 1}, "replicate");  // (B, 3, H + 1, W + 1)
  const int64_t h = x.size(2), w = x.size(3);
  const at::Tensor base = p.narrow(2, 0, h).narrow(3, 0, w);
  const at::Tensor x_diff = p.narrow(2, 0, h).narrow(3, 1, w) - base;
  const at::Tensor y_diff = p.narrow(2, 1, h).narrow(3, 0, w) - base;
  return (x_diff.square() + y_diff.square()).mean({1, 2, 3}).sum();
}

at::Tensor disco_range_loss(const at::Tensor& x) { return (x - x.clamp(-1, 1)).square().mean({1, 2, 3}).sum(); }

at::Tensor disco_saturation_loss(const at::Tensor& x) { return (x - x.clamp(-1, 1)).abs().mean(); }

SamplerGuidance::SamplerGuidance(std::shared_ptr<Guide> guide, SamplerGuidanceOptions options)
    : guide_(std::move(guide)), options_(std::move(options)) {
  if (!guide_) throw Error("sampler guidance: no guide");
  check_options(options_);
}

void SamplerGuidance::set_options(SamplerGuidanceOptions options) {
  check_options(options);
  options_ = std::move(options);
}

SamplerGuidanceResult SamplerGuidance::gradient(const at::Tensor& x_t, const at::Tensor& x0, double t, int64_t step,
                                                double blend) {
  if (!x_t.defined() || x_t.dim() != 4 || x_t.size(1) != 3) {
    throw Error("sampler guidance: x_t must be (B, 3, H, W), got " + (x_t.defined() ? shape_str(x_t.sizes()) : "nothing"));
  }
  if (!x0.defined() || x0.sizes() != x_t.sizes()) {
    throw Error("sampler guidance: x0 must have x_t's shape " + shape_str(x_t.sizes()) + ", got " +
                (x0.defined() ? shape_str(x0.sizes()) : "nothing"));
  }
  if (!x_t.requires_grad() || !x0.requires_grad()) {
    throw Error("sampler guidance: x_t must require grad and x0 be computed from it (with grad enabled)");
  }
  if (!(t >= 0 && t <= 1)) throw Error("sampler guidance: t must be in [0, 1], got " + std::to_string(t));
  const SamplerGuidanceOptions& o = options_;
  SamplerGuidanceResult result;
  SamplerGuidanceReport& r = result.report;
  r.overview = static_cast<int64_t>(std::lround(o.cut_overview.at(t)));
  r.innercut = static_cast<int64_t>(std::lround(o.cut_innercut.at(t)));
  r.ic_pow = o.cut_ic_pow.at(t);

  // x_in's and x0's gradients, each on a detached copy, then one backward through the model's graph.
  const at::Tensor x_in = x0 * blend + x_t * (1.0 - blend);
  const at::Tensor in_leaf = x_in.detach().requires_grad_(true);
  const at::Tensor x0_leaf = x0.detach().requires_grad_(true);
  const int64_t per_set = r.overview + r.innercut;
  if (per_set > 0 && o.clip_guidance_scale != 0) {
    GuideOptions g = o.guide;
    g.cutouts.method = CutMethod::kDisco;
    g.cutouts.cutn = per_set * o.cutn_batches;
    g.cutouts.overview = r.overview * o.cutn_batches;
    g.cutouts.cut_pow = r.ic_pow;
    g.cutn_batches = o.cutn_batches;
    g.tv_weight = g.symmetry_weight = g.saturation_weight = g.init_weight = 0;
    g.init_image = at::Tensor();
    guide_->set_options(g);
    const double scale = o.clip_guidance_scale;
    at::Tensor image = in_leaf.add(1).div(2);  // [0, 1], as CLIP's preprocessing expects
    image.register_hook([scale](const at::Tensor& grad) { return grad * scale; });
    guide_->backward(image, step, &r.clip);
  }
  at::Tensor reg;  // the scaled regularisers, on the leaves
  auto add = [&](double scale, const at::Tensor& value, double& out) {
    out = value.item<double>();
    if (scale != 0) reg = reg.defined() ? reg + value * scale : value * scale;
  };
  add(o.tv_scale, disco_tv_loss(in_leaf), r.tv);
  add(o.range_scale, disco_range_loss(x0_leaf), r.range);
  add(o.sat_scale, disco_saturation_loss(in_leaf), r.saturation);
  if (o.init_image.defined()) {
    const at::Tensor init = o.init_image.to(in_leaf.device(), in_leaf.scalar_type());
    if (init.dim() != 4 || init.size(1) != 3 || init.size(2) != x_t.size(2) || init.size(3) != x_t.size(3) ||
        (init.size(0) != 1 && init.size(0) != x_t.size(0))) {
      throw Error("sampler guidance: init_image must be (1 or B, 3, H, W) like x_t " + shape_str(x_t.sizes()) +
                  ", got " + shape_str(init.sizes()));
    }
    add(o.init_scale, (in_leaf - init).square().mean({1, 2, 3}).sum(), r.init);
  }
  if (reg.defined()) reg.backward();
  r.total = o.clip_guidance_scale * r.clip.prompt_loss + o.tv_scale * r.tv + o.range_scale * r.range +
            o.sat_scale * r.saturation + o.init_scale * r.init;

  std::vector<at::Tensor> outputs, grads;
  if (in_leaf.grad().defined()) outputs.push_back(x_in), grads.push_back(in_leaf.grad());
  if (x0_leaf.grad().defined()) outputs.push_back(x0), grads.push_back(x0_leaf.grad());
  at::Tensor grad = outputs.empty() ? at::zeros_like(x_t)
                                    : torch::autograd::grad(outputs, {x_t}, grads, /*retain_graph=*/false,
                                                            /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!grad.defined()) grad = at::zeros_like(x_t);
  grad = at::nan_to_num(grad.detach(), 0.0, 0.0, 0.0);
  const double rms = grad.square().mean().sqrt().item<double>();
  r.raw_rms = rms;
  if (o.clamp_max > 0 && rms > o.clamp_max) grad = grad * (o.clamp_max / rms);
  result.grad = grad;
  return result;
}

}  // namespace clipguide::guidance
