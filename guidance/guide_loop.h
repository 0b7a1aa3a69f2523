// GuideLoop: one guidance run, the object the batch CLI, the GUI and user programs all drive. It owns the
// optimiser over a Generator's parameters (seen only through generators/generator.h) and does each step:
// render → freeze composite → guide loss (image hooks inside) → backward → parameter hooks → optimiser step →
// post_step. The loop is the one owner of cross-thread control of a run: pause/stop work from any thread,
// and every other change from another thread (settings, options, restores, freezes, a host's own edits) is a
// task posted to the loop and run on the stepping thread before the next step, in the order posted; snapshots (generator + optimiser state) let a run go back; a frozen region stays exactly as it was.
// Shapes: B images, H x W pixels.
#pragma once

#include "core/error.h"
#include "generators/generator.h"
#include "guidance/guide.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace torch::optim {
class Optimizer;
}

namespace clipguide::guidance {

// Thrown by GuideLoop::step() when a step's loss is NaN or inf (a divergent learning rate, a NaN in an init
// image): the optimiser did not step on it, so the generator and last_image() still hold the last finite
// step's state. `step` counts from 1 (as LoopProgress::step): step - 1 steps were finite and done.
class NonFiniteLoss : public Error {
 public:
  NonFiniteLoss(int64_t step, double loss);
  int64_t step;
};

// The optimiser and its settings.
struct LoopSettings {
  std::string optimizer = "adam";  // a name of optimizer_names() (guidance/optimizers.h)
  double learning_rate = 0.1;      // step size
  double weight_decay = 0.0;       // L2 (adamw: decoupled) weight decay
  double momentum = 0.0;           // sgd and rmsprop momentum
};

// What run() reports every `every` steps.
struct LoopProgress {
  int64_t step = 0;              // steps done so far (the one reported is step - 1)
  at::Tensor image;              // (B, 3, H, W) in [0, 1], detached: what the last step scored
  GuideReport report;            // the last step's loss report
  double its_per_second = 0.0;   // since the previous callback
};
using LoopCallback = std::function<void(const LoopProgress&)>;

// Everything needed to continue a run from an earlier point.
struct LoopSnapshot {
  int64_t step = 0;                    // steps done when it was taken
  generators::TensorMap generator;     // Generator::state(), deep copies
  LoopSettings settings;               // optimiser settings then
  std::string optimizer_state;         // the optimiser's serialised state (moments, step counts)
};

class GuideLoop {
 public:
  // Neither pointer may be null (Error). The loop takes the generator's parameters() once, at construction
  // and when a snapshot is restored; Generator implementations keep them valid (update in place).
  GuideLoop(std::shared_ptr<generators::Generator> generator, std::shared_ptr<Guide> guide,
            LoopSettings settings = {});
  ~GuideLoop();
  GuideLoop(const GuideLoop&) = delete;
  GuideLoop& operator=(const GuideLoop&) = delete;

  // One step; returns its report. Runs the posted tasks first. Call from one thread at a time.
  // A loss that is not finite throws NonFiniteLoss before the optimiser steps (run() passes it on).
  GuideReport step();
  // Up to `iterations` steps (fewer when stopped); calls `callback` after every `every`-th step and after
  // the last. Blocks while paused. Returns the number of steps done. A stop requested before run() starts
  // is forgotten: run() clears it.
  int64_t run(int64_t iterations, const LoopCallback& callback = {}, int64_t every = 1);

  // Several processes on one image (GuideOptions::shard/shards): called after each backward, before the
  // optimiser steps, with the step's report and the parameters (each with a defined gradient); it sums the
  // report's numbers and the gradients over the processes in place, so every process takes the same step.
  using ProcessSum = std::function<void(GuideReport& report, const std::vector<at::Tensor>& parameters)>;
  void set_sum_over_processes(ProcessSum sum);
  // `value` summed over the processes through that sum (itself in one process); every process must call it.
  double sum_over_processes(double value);

  // --- from any thread ---------------------------------------------------------------------------------
  void pause();
  void resume();
  void request_stop();  // ends run() after the current step; also releases a paused run
  bool paused() const { return paused_.load(); }
  bool stop_requested() const { return stop_.load(); }
  // Runs `task` on the stepping thread before the next step (or at the next run_posted()), after the tasks
  // posted before it. The updates below are such tasks.
  using LoopTask = std::function<void(GuideLoop&)>;
  void post(LoopTask task);
  // Called by post() after queueing, on the posting thread: a host that sleeps between steps wakes on it.
  void set_post_listener(std::function<void()> listener);
  bool has_posted() const;
  // On the stepping thread (inside a posted task): the settings take effect now, as update_settings' task
  // does. Bad values throw.
  void apply_settings(const LoopSettings& settings);
  // Applied before the next step (a different optimiser, momentum or weight decay starts its state afresh;
  // the same optimiser keeps its moments and takes the new learning rate). Bad values throw here.
  void update_settings(LoopSettings settings);
  void update_guide_options(GuideOptions options);
  void request_restore(LoopSnapshot snapshot);
  // Freezes the region where `mask` is 1 ((H', W') or (1, 1, H', W') in [0, 1], resized to the image):
  // from the next step on, the image the loop scores and reports is m * frozen + (1 - m) * render, where
  // `frozen` is the image as it was when the freeze took effect. Exact for every generator and optimiser
  // (a gradient hook is not: Adam's momentum, and generators whose parameters are not per-pixel, still
  // move a region whose gradient is zero); gradients reach the generator only through 1 - m. Calling it
  // again replaces the mask; pixels frozen before keep their frozen values. A bad mask throws Error here, in
  // the caller's thread.
  void freeze_region(const at::Tensor& mask);
  // Ends the freeze at the next step: the region shows what the generator renders now, and is optimised
  // again. Snapshots neither carry nor change the freeze.
  void clear_freeze();
  LoopSettings settings() const;  // the settings in use (posted ones not yet included)
  int64_t steps_done() const { return step_.load(); }
  // The last step's image (B, 3, H, W) detached, and report; undefined / empty before the first step.
  at::Tensor last_image() const;
  GuideReport last_report() const;

  // --- between steps, from the stepping thread (between step() calls, or inside run()'s callback) -----
  // Runs the posted tasks now, in order; returns how many ran. A task that throws: with `on_error`, it is
  // told and the next task runs; without, the exception leaves here and the tasks after it stay queued.
  size_t run_posted(const std::function<void(const std::exception&)>& on_error = {});
  LoopSnapshot snapshot() const;
  void restore(const LoopSnapshot& snapshot);  // other threads: request_restore()
  // The current image (B, 3, H, W) in [0, 1], detached: render() with the freeze in effect applied. What
  // the next step would score; last_image() is what the last step scored.
  at::Tensor render_image();

  generators::Generator& generator() { return *generator_; }
  Guide& guide() { return *guide_; }

 private:
  void apply_freeze(const at::Tensor& mask);
  at::Tensor composite(const at::Tensor& image) const;  // the freeze applied to a render, (B, 3, H, W)
  void build_optimizer(const LoopSettings& settings);

  std::shared_ptr<generators::Generator> generator_;
  std::shared_ptr<Guide> guide_;
  std::vector<at::Tensor> parameters_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  ProcessSum sum_over_processes_;
  LoopSettings settings_;
  at::Tensor freeze_mask_;    // (1, 1, H, W) in [0, 1] on the image's device; undefined: nothing frozen
  at::Tensor frozen_image_;   // (B, 3, H, W) detached: the image when the freeze took effect

  std::atomic<int64_t> step_{0};
  std::atomic<bool> paused_{false};
  std::atomic<bool> stop_{false};
  std::mutex pause_mutex_;
  std::condition_variable pause_cv_;

  mutable std::mutex posted_mutex_;  // guards posted_ and post_listener_
  std::deque<LoopTask> posted_;
  std::function<void()> post_listener_;
  mutable std::mutex state_mutex_;    // guards settings_ (for settings()), last_image_, last_report_
  at::Tensor last_image_;
  GuideReport last_report_;
};

// Best of several random starts, for guides whose loss has many poor local minima (a small CLIP such as the
// shipped shapes-clip). Trial t re-initialises the generator with init_random(seed + t) and runs `steps` steps
// from the loop's current step with a fresh optimiser; its final image is scored by the guidance loss on the
// cutouts of steps 0..probe_steps-1 (the same cutouts for every trial). The loop is left at the end of the
// best trial (generator, optimiser and step count), as if only that one had run. A stop request during a
// trial ends the trials there (the best so far wins). `callback` is passed to each trial's run().
struct StartChoice {
  int64_t best = 0;            // index of the trial kept (its start: trial_seed(seed, best))
  std::vector<double> scores;  // each finished trial's probe loss, lower is better
};
StartChoice choose_start(GuideLoop& loop, int64_t trials, int64_t steps, uint64_t seed, int64_t probe_steps = 4,
                         const LoopCallback& callback = {});

// The random start of trial `trial` under `seed`: `seed` itself for trial 0, well-mixed seeds after it, so
// that runs with neighbouring seeds (1, 2, 3, ...) try disjoint starts.
uint64_t trial_seed(uint64_t seed, int64_t trial);

}  // namespace clipguide::guidance
