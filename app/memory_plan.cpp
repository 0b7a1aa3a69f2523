// The memory planner (see memory_plan.h).
#include "app/memory_plan.h"

#include "core/error.h"
#include "core/memory.h"

#include <ATen/ops/full.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>
#include <utility>

namespace clipguide::app {
namespace {

constexpr double kMargin = 1.10;      // predictions are raised by this before they are compared
// CPU: the resident size grows by about this much per predicted tensor byte of a step (glibc keeps freed
// blocks in its arenas; oneDNN's scratch memory is not a tensor). Calibrated at 512x512, cutn 32, ViT-B/32
// + VQGAN f16 (bench/memory_bench.py): with it a 4.4 GiB budget plans checkpointing and the run peaks at
// 4.0 GiB resident; a 3.4 GiB budget is refused (448x448 named) though --cutn_batches 4 --checkpoint
// would just fit (3.36 GiB): conservative, not exact.
constexpr double kCpuSlack = 1.35;
constexpr int64_t kFewCutouts = 4;    // the probes' cutout counts
constexpr int64_t kMoreCutouts = 8;

std::string plan_text(bool checkpoint, int64_t cutn_batches) {
  return "cutn_batches " + std::to_string(cutn_batches) + (checkpoint ? ", checkpointing" : ", no checkpointing");
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int64_t memory_budget(const std::string& text, c10::Device device) {
  if (text != "auto") return parse_bytes(text, "--max_memory");
  const int64_t free = available_bytes(device);
  if (free < 0) {
    throw Error("--max_memory auto: cannot tell how much memory " + device.str() + " has free; give a size such as 6G");
  }
  const int64_t used = device.is_cpu() ? resident_bytes() : MemoryMeter(device).current();
  return std::max<int64_t>(used, 0) + static_cast<int64_t>(0.9 * static_cast<double>(free));
}

std::string MemoryPlan::summary() const {
  return plan_text(checkpoint, cutn_batches) + ": about " + format_bytes(predicted) + " of the " +
         format_bytes(budget) + " budget";
}

Quadratic Quadratic::through(const double x[3], const double y[3]) {
  Quadratic f;
  if (!(x[0] < x[1] && x[1] < x[2])) {  // an image too small for three probe sizes: through 0 and the largest
    f.b = std::max(0.0, y[2] / x[2]);
    return f;
  }
  const double slope_01 = (y[1] - y[0]) / (x[1] - x[0]), slope_02 = (y[2] - y[0]) / (x[2] - x[0]);
  f.q = (slope_02 - slope_01) / (x[2] - x[1]);
  f.b = slope_01 - f.q * (x[0] + x[1]);
  if (f.q < 0 || f.b < 0) {  // not convex: the straight line through the ends
    f.q = 0;
    f.b = std::max(0.0, slope_02);
  }
  f.a = y[0] - f.b * x[0] - f.q * x[0] * x[0];
  return f;
}

double Quadratic::largest_within(double room, double extra_slope) const {
  const double r = room - a, slope = b + extra_slope;
  if (r <= 0) return 0;
  if (q > 0) return (-slope + std::sqrt(slope * slope + 4 * q * r)) / (2 * q);
  return slope > 0 ? r / slope : 0;
}

int64_t MemoryModel::predict(bool checkpoint, int64_t pixels, int64_t cutouts_at_once) const {
  const int i = checkpoint ? 1 : 0;
  const auto px = static_cast<double>(pixels), n = static_cast<double>(cutouts_at_once);
  const double step = std::max(held[i].at(px) + clip_part(n), peak[i].at(px));
  return fixed + static_cast<int64_t>(kMargin * slack * std::max(step, 0.0));
}

double MemoryModel::pixels_within(int64_t budget, bool checkpoint, int64_t cutouts_at_once) const {
  const int i = checkpoint ? 1 : 0;
  const auto n = static_cast<double>(cutouts_at_once);
  const double room = static_cast<double>(budget - fixed) / (kMargin * slack);
  return std::min(held[i].largest_within(room - clip_part(n)), peak[i].largest_within(room));
}

MemoryModel probe_memory(const generators::Generator& generator,
                         const generators::GeneratorOptions& options_of_generator,
                         const std::vector<guidance::GuideMember>& members, const guidance::GuideOptions& options,
                         c10::Device device, const Status& note) {
  MemoryMeter meter(device);
  MemoryModel model;
  model.fixed = device.is_cpu() ? resident_bytes() : meter.current();
  model.slack = device.is_cpu() ? kCpuSlack : 1.0;
  if (note) note("planning memory: 12 probe steps");
  // The peak bytes above the current ones while `work` runs.
  auto peak_of = [&](const std::function<void()>& work) {
    const int64_t before = meter.current();
    meter.reset_peak();
    work();
    return static_cast<double>(meter.peak() - before);
  };

  // Probe sizes: the image itself at 0.5, 0.75 and 1 of its sides, shrunk first to 128 x 128 pixels' area
  // when larger (what a generator holds grows with its pixels, faster with attention: nearer is better).
  const int64_t f = std::max<int64_t>(1, generator.size_factor()), batch = options_of_generator.batch;
  const auto width = static_cast<double>(options_of_generator.width), height = static_cast<double>(options_of_generator.height);
  const double shrink = std::sqrt(std::min(1.0, 128.0 * 128.0 / (width * height)));
  std::pair<int64_t, int64_t> sizes[3];
  double px[3];
  for (int k = 0; k < 3; ++k) {
    const double scale = shrink * (0.5 + 0.25 * k);
    sizes[k] = {std::max<int64_t>(f, static_cast<int64_t>(width * scale) / f * f),
                std::max<int64_t>(f, static_cast<int64_t>(height * scale) / f * f)};
    px[k] = static_cast<double>(sizes[k].first * sizes[k].second * batch);
  }
  // The generator alone: its render and backward at a size; {bytes held after the forward, peak}.
  auto generator_probe = [&](bool checkpoint, std::pair<int64_t, int64_t> size) {
    generators::GeneratorOptions o = options_of_generator;
    o.width = size.first;
    o.height = size.second;
    o.checkpoint = checkpoint;
    std::unique_ptr<generators::Generator> g = generator.rebuilt(o);
    if (!g) {
      throw Error("--max_memory: the " + generator.name() +
                  " generator cannot be rebuilt at other sizes to probe its memory; set --cutn_batches and "
                  "--checkpoint yourself");
    }
    const int64_t before = meter.current();
    meter.reset_peak();
    at::Tensor image = g->render();
    const auto held = static_cast<double>(meter.current() - before);
    image.sum().backward();
    image = at::Tensor();
    return std::pair<double, double>{held, static_cast<double>(meter.peak() - before)};
  };
  generator_probe(false, sizes[0]);  // warm-up: one-time allocations (kernels' caches) stay out of the fit
  for (int i = 0; i < 2; ++i) {
    double held[3], peak[3];
    for (int k = 0; k < 3; ++k) std::tie(held[k], peak[k]) = generator_probe(i == 1, sizes[k]);
    model.held[i] = Quadratic::through(px, held);
    model.peak[i] = Quadratic::through(px, peak);
  }
  model.checkpoint_helps = model.held[1].at(px[2]) < 0.9 * model.held[0].at(px[2]);

  // CLIP alone: the guide's backward into a plain image (no generator behind it) with few and more cutouts.
  guidance::GuideOptions probe_options = options;
  probe_options.cutn_batches = 1;
  probe_options.shard = 0;
  probe_options.shards = 1;
  probe_options.init_weight = 0;
  probe_options.init_image = at::Tensor();
  probe_options.report = false;
  probe_options.cuda_graphs = false;
  guidance::Guide guide(members, probe_options);
  guide.set_prompts({guidance::GuidePrompt::from_noise(0)});  // no tokenizer needed; one prompt like any
  auto clip_peak = [&](std::pair<int64_t, int64_t> size, int64_t cutouts) {
    probe_options.cutouts.cutn = cutouts;
    guide.set_options(probe_options);
    const at::Tensor leaf =
        at::full({batch, 3, size.second, size.first}, 0.5, at::TensorOptions().device(device)).requires_grad_(true);
    return peak_of([&] { guide.backward(leaf, 0); });
  };
  // At the run's own size: how many pixels the cutouts are drawn from decides their supersampling, which a
  // small probe would not show (at 512 px it made CLIP's part half again as large as one fitted at 128).
  const std::pair<int64_t, int64_t> run_size{options_of_generator.width, options_of_generator.height};
  clip_peak(sizes[0], kFewCutouts);  // warm-up
  const double few = clip_peak(run_size, kFewCutouts), more = clip_peak(run_size, kMoreCutouts);
  model.c = std::max(0.0, (more - few) / static_cast<double>(kMoreCutouts - kFewCutouts));
  model.c0 = few - model.c * kFewCutouts;
  return model;
}

MemoryPlan choose_plan(const MemoryModel& model, int64_t width, int64_t height, int64_t batch, int64_t cutouts,
                       int64_t size_factor, int64_t budget) {
  cutouts = std::max<int64_t>(cutouts, 1);
  const int64_t pixels = width * height * batch;
  MemoryPlan plan;
  plan.budget = budget;
  // In order of speed: micro-batches cost little, recomputing the generator's network costs a forward.
  for (bool checkpoint : {false, true}) {
    if (checkpoint && !model.checkpoint_helps) continue;
    for (int64_t batches = 1;; batches = std::min(batches * 2, cutouts)) {
      plan.checkpoint = checkpoint;
      plan.cutn_batches = batches;
      plan.predicted = model.predict(checkpoint, pixels, ceil_div(cutouts, batches));
      if (plan.predicted <= budget) return plan;
      if (batches == cutouts) break;
    }
  }
  // The leanest plan (the last one tried) does not fit: the largest image of the same aspect that would.
  const int64_t f = std::max<int64_t>(size_factor, 1);
  const double fit_pixels = model.pixels_within(budget, plan.checkpoint, ceil_div(cutouts, plan.cutn_batches)) /
                            static_cast<double>(batch);
  const auto fit_w = static_cast<int64_t>(std::sqrt(fit_pixels * static_cast<double>(width) / static_cast<double>(height))) / f * f;
  const int64_t fit_h = fit_w * height / width / f * f;
  std::string message = "--max_memory " + format_bytes(budget) + ": the leanest plan (" +
                        plan_text(plan.checkpoint, plan.cutn_batches) + ") needs about " + format_bytes(plan.predicted) +
                        " at " + std::to_string(width) + "x" + std::to_string(height) + " (the models and runtime " +
                        format_bytes(model.fixed) + ")";
  if (fit_w >= f && fit_h >= f) {
    message += "; " + std::to_string(fit_w) + "x" + std::to_string(fit_h) + " would fit, or fewer CLIP models";
  } else {
    message += "; no size fits: a larger budget or fewer or smaller CLIP models";
  }
  throw Error(message);
}

std::optional<MemoryPlan> apply_memory_plan(RunSettings& settings, RunModels& models, c10::Device device,
                                            uint64_t seed, int64_t processes, const Status& note) {
  if (settings.max_memory.empty()) return std::nullopt;
  const int64_t budget = memory_budget(settings.max_memory, device);
  generators::GeneratorOptions options = generator_options(settings, device, seed);
  const auto [width, height] = image_size(settings, *models.generator);
  options.width = width;
  options.height = height;
  const MemoryModel model = probe_memory(*models.generator, options, models.members, guide_options(settings, seed),
                                         device, note);
  const int64_t cutouts = ceil_div(settings.num_cuts, std::max<int64_t>(processes, 1));
  const MemoryPlan plan = choose_plan(model, width, height, options.batch, cutouts, models.generator->size_factor(), budget);
  if (note) note("memory plan: " + plan.summary());
  MemoryMeter(device).reset_peak();  // from here on the run's own peak
  settings.cutn_batches = plan.cutn_batches;
  if (plan.checkpoint != settings.checkpoint) {
    settings.checkpoint = plan.checkpoint;
    options.checkpoint = plan.checkpoint;  // the run's options (size already the generator's)
    models.generator = models.generator->rebuilt(options);
  }
  return plan;
}

}  // namespace clipguide::app
