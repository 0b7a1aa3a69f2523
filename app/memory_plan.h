// The memory planner behind --max_memory: the fastest way to run a step within a budget. A plan is the
// pair of settings that trade time for memory without changing the gradient: --cutn_batches (CLIP's
// activations for part of the cutouts at a time) and --checkpoint (the generator's network recomputed in
// backward).
//
// How: probe steps at small sizes, counted with a MemoryMeter (core/memory.h).
// - The generator alone, rebuilt() on its loaded weights at 0.5, 0.75 and 1 of the image's sides (shrunk to
//   128 x 128 pixels' area first when larger), with and without checkpointing: what its forward holds and
//   its peak, each fitted as a + b · pixels + q · pixels².
// - CLIP alone (a guide backward into a plain image, no generator behind it) at the run's own size with 4
//   and 8 cutouts (cheap at any size: no generator), fitted as c0 + c · cutouts.
// A step's peak is the larger of CLIP's part on top of what the generator holds and the generator's own
// backward. The candidates in order of speed (no checkpointing with 1, 2, 4, ... micro-batches, then
// checkpointing with the same) are tried, and the first whose prediction plus 10% fits is the plan.
// CPU: the prediction is the resident size at planning time plus the step's tensor bytes times a measured
// slack (the resident size grows more than the tensors); CUDA: the tensor bytes on the device
// (max_memory_allocated).
#pragma once

#include "app/session.h"
#include "generators/generator.h"
#include "guidance/guide.h"

#include <c10/core/Device.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace clipguide::app {

// --max_memory's value as bytes: a size ("6G", parse_bytes) or "auto": CPU: the resident size now plus
// 90% of the available RAM; CUDA: the tensor bytes allocated now plus 90% of the card's free memory.
int64_t memory_budget(const std::string& text, c10::Device device);

struct MemoryPlan {
  int64_t cutn_batches = 1;
  bool checkpoint = false;
  int64_t predicted = 0;  // bytes at the step's peak, models included
  int64_t budget = 0;
  // "cutn_batches 4, no checkpointing: about 2.1 GiB of the 6.0 GiB budget (models and runtime 1.2 GiB)"
  std::string summary() const;
};

// y = a + b · x + q · x² (x: pixels; q: attention over the latent grid, quadratic in its positions).
struct Quadratic {
  double a = 0, b = 0, q = 0;
  double at(double x) const { return a + b * x + q * x * x; }
  // Through three points (x ascending); a line through the outer two when the curve would bend down.
  static Quadratic through(const double x[3], const double y[3]);
  // The largest x >= 0 with at(x) + extra_slope · x <= room; 0 when none.
  double largest_within(double room, double extra_slope = 0) const;
};

struct MemoryModel {  // the fitted peak of a step
  int64_t fixed = 0;  // bytes before the step: weights (CUDA) or the whole process (CPU)
  // The generator (render and its backward), per checkpoint setting [0: off, 1: on]: the bytes its forward
  // leaves held for backward, and the most it holds at once (the peak of its backward, recomputation included).
  Quadratic held[2], peak[2];
  // CLIP's part at the run's size: c0 + c · n, n the cutouts held at once (per micro-batch). Smaller images
  // need less (their cutouts are supersampled less), so it bounds them too.
  double c0 = 0, c = 0;
  bool checkpoint_helps = false;  // the generator's memory falls with checkpointing (it has a network)
  // What the budget's memory grows by per tensor byte of the step: 1 on CUDA (the budget is tensor bytes);
  // on the CPU the resident size, which grows more than the tensors (kCpuSlack).
  double slack = 1.0;
  double clip_part(double cutouts_at_once) const { return c0 + c * cutouts_at_once; }
  // fixed + 10% over the step's peak: the larger of CLIP's part on top of what the generator holds, and the
  // generator's own backward (CLIP's part freed by then).
  int64_t predict(bool checkpoint, int64_t pixels, int64_t cutouts_at_once) const;
  // The most pixels whose prediction fits `budget` with `cutouts_at_once`; 0 when none.
  double pixels_within(int64_t budget, bool checkpoint, int64_t cutouts_at_once) const;
};

// Probes `generator` (through rebuilt(); one that cannot be rebuilt is a clipguide::Error naming
// --max_memory) with `members` and the Guide's `options` (augmentations, precision; cutn and micro-batches
// are the probes' own) on `device`. `options_of_generator`: the run's generator options (size, batch).
MemoryModel probe_memory(const generators::Generator& generator,
                         const generators::GeneratorOptions& options_of_generator,
                         const std::vector<guidance::GuideMember>& members, const guidance::GuideOptions& options,
                         c10::Device device, const Status& note = {});

// The fastest plan for `cutouts` cutouts per step (this process's share) at width x height (x batch) within
// `budget`. When even the leanest plan does not fit, a clipguide::Error naming --max_memory, what the
// leanest plan needs, and the largest size (same aspect, multiples of `size_factor`) that would fit.
MemoryPlan choose_plan(const MemoryModel& model, int64_t width, int64_t height, int64_t batch, int64_t cutouts,
                       int64_t size_factor, int64_t budget);

// --max_memory for a run whose models are loaded: the model probed, a plan chosen for this process's share
// of the cutouts (`processes` share them), announced through `note`, and applied: settings.cutn_batches and
// settings.checkpoint set, the generator rebuilt() when its checkpointing changes. Without --max_memory:
// nothing, and no plan.
std::optional<MemoryPlan> apply_memory_plan(RunSettings& settings, RunModels& models, c10::Device device,
                                            uint64_t seed, int64_t processes, const Status& note = {});

}  // namespace clipguide::app
