// GuideLoop (see guide_loop.h): optimiser construction by name, the step, run() with pause/stop and
// progress callbacks, posted tasks run between steps, snapshots (generator state + the optimiser's
// state serialised through LibTorch's archives, so moments are real copies), and the exact region freeze
// (a composite with the image as it was, so no optimiser or generator can move the frozen pixels).
// Shapes: B images, H x W pixels.
#include "guidance/guide_loop.h"

#include "core/error.h"
#include "guidance/hooks.h"
#include "guidance/optimizers.h"

#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>

namespace clipguide::guidance {
namespace {

void check_settings(const LoopSettings& s) {
  if (!(s.learning_rate > 0.0) || !std::isfinite(s.learning_rate)) {
    throw Error("GuideLoop: learning_rate must be positive and finite, got " + std::to_string(s.learning_rate));
  }
  if (!(s.weight_decay >= 0.0) || !(s.momentum >= 0.0)) {
    throw Error("GuideLoop: weight_decay and momentum must be >= 0");
  }
  const auto names = optimizer_names();
  if (std::find(names.begin(), names.end(), s.optimizer) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw Error("GuideLoop: unknown optimizer '" + s.optimizer + "' (known: " + known + ")");
  }
}

generators::TensorMap deep_copy(const generators::TensorMap& state) {
  generators::TensorMap out;
  for (const auto& [k, v] : state) out[k] = v.defined() ? v.detach().clone() : v;
  return out;
}

}  // namespace

GuideLoop::GuideLoop(std::shared_ptr<generators::Generator> generator, std::shared_ptr<Guide> guide,
                     LoopSettings settings)
    : generator_(std::move(generator)), guide_(std::move(guide)) {
  if (!generator_) throw Error("GuideLoop: no generator");
  if (!guide_) throw Error("GuideLoop: no guide");
  check_settings(settings);
  parameters_ = generator_->parameters();
  if (parameters_.empty()) throw Error("GuideLoop: generator '" + generator_->name() + "' has no parameters");
  build_optimizer(settings);
}

GuideLoop::~GuideLoop() = default;

void GuideLoop::build_optimizer(const LoopSettings& s) {
  check_settings(s);
  optimizer_ = make_optimizer(s.optimizer, parameters_, s.learning_rate, s.weight_decay, s.momentum);
  std::lock_guard<std::mutex> lock(state_mutex_);
  settings_ = s;
}

// Settings changed between steps: the same optimiser keeps its state (moments) and takes the new rate; a
// different optimiser, momentum or weight decay starts afresh.
void GuideLoop::apply_settings(const LoopSettings& s) {
  LoopSettings current = settings();
  if (s.optimizer != current.optimizer || s.momentum != current.momentum || s.weight_decay != current.weight_decay) {
    build_optimizer(s);
    return;
  }
  check_settings(s);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(s.learning_rate);
  std::lock_guard<std::mutex> lock(state_mutex_);
  settings_ = s;
}

void GuideLoop::set_sum_over_processes(ProcessSum sum) { sum_over_processes_ = std::move(sum); }

double GuideLoop::sum_over_processes(double value) {
  if (!sum_over_processes_) return value;
  GuideReport report;
  report.total = value;
  sum_over_processes_(report, {});
  return report.total;
}

void GuideLoop::post(LoopTask task) {
  std::function<void()> listener;
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    posted_.push_back(std::move(task));
    listener = post_listener_;
  }
  if (listener) listener();
}

void GuideLoop::set_post_listener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(posted_mutex_);
  post_listener_ = std::move(listener);
}

bool GuideLoop::has_posted() const {
  std::lock_guard<std::mutex> lock(posted_mutex_);
  return !posted_.empty();
}

size_t GuideLoop::run_posted(const std::function<void(const std::exception&)>& on_error) {
  size_t ran = 0;
  for (;;) {
    LoopTask task;
    {
      std::lock_guard<std::mutex> lock(posted_mutex_);
      if (posted_.empty()) return ran;
      task = std::move(posted_.front());
      posted_.pop_front();
    }
    ++ran;
    if (!on_error) {
      task(*this);  // throws on: the tasks after it stay queued
      continue;
    }
    try {
      task(*this);
    } catch (const std::exception& e) {
      on_error(e);
    }
  }
}

NonFiniteLoss::NonFiniteLoss(int64_t step, double loss)
    : Error("the loss is " + std::string(std::isnan(loss) ? "NaN" : "infinite") + " at step " + std::to_string(step) +
            " (a learning rate too high, or NaN in an input)"),
      step(step) {}

GuideReport GuideLoop::step() {
  run_posted();
  const int64_t step = step_.load();
  optimizer_->zero_grad();
  at::Tensor image = composite(generator_->render());  // (B, 3, H, W) in [0, 1]
  GuideReport report;
  guide_->backward(image, step, &report);
  if (sum_over_processes_) {
    // Every parameter takes part, with a zero gradient where this process's cutouts gave none.
    for (auto& p : parameters_) {
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    }
    sum_over_processes_(report, parameters_);  // before the NaN check: every process decides alike
  }
  if (!std::isfinite(report.total)) throw NonFiniteLoss(step + 1, report.total);
  guide_->hooks().apply_to_parameters(parameters_, step);
  optimizer_->step();
  generator_->post_step();
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    last_image_ = image.detach();
    last_report_ = report;
  }
  step_.store(step + 1);
  return report;
}

int64_t GuideLoop::run(int64_t iterations, const LoopCallback& callback, int64_t every) {
  if (every < 1) throw Error("GuideLoop::run: every must be >= 1, got " + std::to_string(every));
  stop_.store(false);
  using Clock = std::chrono::steady_clock;
  auto since = Clock::now();
  int64_t since_steps = 0, done = 0;
  while (done < iterations && !stop_.load()) {
    {
      std::unique_lock<std::mutex> lock(pause_mutex_);
      pause_cv_.wait(lock, [&] { return !paused_.load() || stop_.load(); });
    }
    if (stop_.load()) break;
    GuideReport report = step();
    ++done;
    ++since_steps;
    if (callback && (done % every == 0 || done == iterations)) {
      const auto now = Clock::now();
      const double seconds = std::chrono::duration<double>(now - since).count();
      LoopProgress progress{step_.load(), last_image(), std::move(report),
                            seconds > 0 ? since_steps / seconds : 0.0};
      callback(progress);
      since = Clock::now();  // the callback's own time (saving, drawing) is not counted
      since_steps = 0;
    }
  }
  return done;
}

void GuideLoop::pause() {
  std::lock_guard<std::mutex> lock(pause_mutex_);
  paused_.store(true);
}

void GuideLoop::resume() {
  {
    std::lock_guard<std::mutex> lock(pause_mutex_);
    paused_.store(false);
  }
  pause_cv_.notify_all();
}

void GuideLoop::request_stop() {
  {
    std::lock_guard<std::mutex> lock(pause_mutex_);
    stop_.store(true);
  }
  pause_cv_.notify_all();
}

void GuideLoop::update_settings(LoopSettings settings) {
  check_settings(settings);  // reject bad values here, in the caller's thread
  post([settings = std::move(settings)](GuideLoop& loop) { loop.apply_settings(settings); });
}

void GuideLoop::update_guide_options(GuideOptions options) {
  post([options = std::move(options)](GuideLoop& loop) { loop.guide_->set_options(options); });
}

void GuideLoop::request_restore(LoopSnapshot snapshot) {
  post([snapshot = std::move(snapshot)](GuideLoop& loop) { loop.restore(snapshot); });
}

void GuideLoop::freeze_region(const at::Tensor& mask) {
  check_mask(mask, "freeze_region");
  at::Tensor copy = mask.detach().clone();  // the caller may go on painting into its own tensor
  post([copy = std::move(copy)](GuideLoop& loop) { loop.apply_freeze(copy); });
}

void GuideLoop::clear_freeze() {
  post([](GuideLoop& loop) { loop.apply_freeze(at::Tensor()); });
}

// The freeze's new snapshot is the current image with the old freeze still applied, so pixels frozen
// before keep their values exactly (m = 1 gives frozen * 1 + render * 0).
void GuideLoop::apply_freeze(const at::Tensor& mask) {
  if (!mask.defined()) {
    freeze_mask_ = frozen_image_ = at::Tensor();
    return;
  }
  at::Tensor current = render_image();  // (B, 3, H, W)
  freeze_mask_ = detail::resize_mask_unchecked(mask, current.size(2), current.size(3), current.options());
  frozen_image_ = current;
}

at::Tensor GuideLoop::composite(const at::Tensor& image) const {
  if (!freeze_mask_.defined()) return image;
  return freeze_mask_ * frozen_image_ + (1 - freeze_mask_) * image;  // (B, 3, H, W)
}

at::Tensor GuideLoop::render_image() {
  c10::NoGradGuard no_grad;
  return composite(generator_->render()).detach();
}

LoopSettings GuideLoop::settings() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return settings_;
}

at::Tensor GuideLoop::last_image() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return last_image_;
}

GuideReport GuideLoop::last_report() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return last_report_;
}

LoopSnapshot GuideLoop::snapshot() const {
  LoopSnapshot snap;
  snap.step = step_.load();
  snap.generator = deep_copy(generator_->state());
  snap.settings = settings();
  torch::serialize::OutputArchive archive;
  optimizer_->save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  snap.optimizer_state = bytes.str();
  return snap;
}

void GuideLoop::restore(const LoopSnapshot& snapshot) {
  generator_->load_state(deep_copy(snapshot.generator));  // the snapshot stays usable for another restore
  parameters_ = generator_->parameters();
  build_optimizer(snapshot.settings);
  if (!snapshot.optimizer_state.empty()) {
    torch::serialize::InputArchive archive;
    std::istringstream bytes(snapshot.optimizer_state);
    archive.load_from(bytes, parameters_.front().device());
    optimizer_->load(archive);
  }
  step_.store(snapshot.step);
  std::lock_guard<std::mutex> lock(state_mutex_);
  last_image_ = at::Tensor();
  last_report_ = GuideReport{};
}

uint64_t trial_seed(uint64_t seed, int64_t trial) {
  if (trial == 0) return seed;
  uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(trial));  // SplitMix64 of (seed, trial)
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return (x ^ (x >> 31)) >> 1;  // below 2^63: fits --seed's int64
}

StartChoice choose_start(GuideLoop& loop, int64_t trials, int64_t steps, uint64_t seed, int64_t probe_steps,
                         const LoopCallback& callback) {
  if (trials < 1 || steps < 0 || probe_steps < 1) {
    throw Error("choose_start: need trials >= 1, steps >= 0 and probe_steps >= 1; got " + std::to_string(trials) +
                ", " + std::to_string(steps) + ", " + std::to_string(probe_steps));
  }
  LoopSnapshot start = loop.snapshot();
  start.optimizer_state.clear();  // every trial starts with a fresh optimiser
  StartChoice choice;
  LoopSnapshot best;
  for (int64_t t = 0; t < trials; ++t) {
    loop.generator().init_random(trial_seed(seed, t));
    start.generator = loop.generator().state();
    loop.restore(start);
    loop.run(steps, callback);
    if (loop.stop_requested() && loop.steps_done() < start.step + steps && !choice.scores.empty()) break;
    double score = 0;
    {
      c10::NoGradGuard no_grad;
      const at::Tensor image = loop.render_image();  // (B, 3, H, W)
      for (int64_t p = 0; p < probe_steps; ++p) score += loop.guide().loss(image, p).item<double>();
    }
    // Processes sharing the cutouts each scored their part: all of them see the whole score and choose alike.
    choice.scores.push_back(loop.sum_over_processes(score) / probe_steps);
    if (t == 0 || choice.scores.back() < choice.scores[choice.best]) {
      choice.best = t;
      best = loop.snapshot();
    }
    if (loop.stop_requested()) break;
  }
  loop.restore(best);
  return choice;
}

}  // namespace clipguide::guidance
