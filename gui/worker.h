// clip-studio's optimisation thread: owns the CLIP members, the generator, the Guide and the GuideLoop (or,
// for a diffusion run, the app::DiffusionRender), and steps them while the UI thread draws. The UI never waits on it: it asks for restarts, posts edits (prompts,
// masks, snapshots), which go to the GuideLoop's own task queue and run between steps, and polls the latest
// Frame (image, report, speed).
// Shapes: H x W pixels.
#pragma once

#include "app/diffusion_run.h"
#include "app/session.h"
#include "generators/generator.h"
#include "guidance/guide.h"
#include "guidance/guide_loop.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace clipguide::studio {

// The latest completed step, as the UI shows it.
struct Frame {
  uint64_t version = 0;            // increases with every published frame
  int64_t step = 0;                // steps done
  at::Tensor rgb;                  // (H, W, 3) uint8 on the CPU, contiguous
  guidance::GuideReport report;    // that step's report (empty for a frame published without a step)
  double its_per_second = 0.0;     // smoothed steps per second
};

// A snapshot the UI can go back to.
struct SnapshotInfo {
  int64_t step = 0;   // steps done when it was taken
  size_t id = 0;      // stable handle for restore_snapshot()
};

// Where an edit runs: an optimisation run's GuideLoop or a diffusion run's DiffusionRender (the other is
// null), with the run's Guide.
struct RunRef {
  guidance::GuideLoop* loop = nullptr;
  app::DiffusionRender* diffusion = nullptr;
  guidance::Guide& guide;
};
using Task = std::function<void(RunRef run)>;

class Worker {
 public:
  Worker();
  ~Worker();  // stops and joins the thread
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // --- from the UI thread; none of these block on a step ------------------------------------------
  // Builds a fresh run from `run`'s models, generator, size, seed and device (app/session.h; CLIP members
  // cached while they stay the same) with these prompts and settings, replacing the old one.
  void restart(app::RunSettings run, std::vector<guidance::GuidePrompt> prompts, guidance::LoopSettings settings,
               guidance::GuideOptions options, bool running);
  void set_running(bool running);      // step continuously, or stay paused
  void single_step();                  // one step (while paused)
  void post(Task task);                // between steps (GuideLoop::post, or the diffusion run's queue); while a
                                       // run builds, kept for it; no run: ignored
  void update_settings(const guidance::LoopSettings& settings);   // GuideLoop::update_settings
  void update_guide_options(const guidance::GuideOptions& options);
  void take_snapshot();
  void restore_snapshot(size_t id);
  // Called from the worker thread after it did something (a step, a task) while not running, so a UI that
  // sleeps until the next event (glfwPostEmptyEvent) redraws. While running the UI redraws on its own.
  void set_wake(std::function<void()> wake);

  bool has_run() const { return has_run_.load(); }
  bool running() const { return running_.load(); }
  bool busy() const { return busy_.load(); }     // building a run
  std::string status() const;                    // one line: "loading CLIP models", "running", ...
  // The latest frame, or an empty one (version 0).
  Frame frame() const;
  std::vector<SnapshotInfo> snapshots() const;
  // Errors since the last call (each one line, with context), oldest first.
  std::vector<std::string> take_errors();

 private:
  void thread_main();
  void build(const app::RunSettings& run, std::vector<guidance::GuidePrompt> prompts,
             const guidance::LoopSettings& settings, const guidance::GuideOptions& options);
  void publish(const at::Tensor& image, const guidance::GuideReport* report);
  void build_diffusion(const app::RunSettings& run, std::vector<guidance::GuidePrompt> prompts, c10::Device device,
                       uint64_t seed, const std::vector<guidance::GuideMember>& members);
  void step_diffusion();
  size_t run_diffusion_tasks();
  int64_t steps_done() const;
  void report_error(const std::string& what, const std::exception& e);
  void set_status(std::string status);
  void wake_ui();

  mutable std::mutex mutex_;   // guards everything below except the atomics and the run objects
  std::condition_variable wake_;
  bool quit_ = false;
  std::function<void()> restart_;                    // a run to build (restart()), taken by the thread
  std::vector<Task> early_;                          // posted while that run builds
  std::vector<Task> diffusion_tasks_;                // posted to the diffusion run, run between its steps
  int64_t step_requests_ = 0;
  std::vector<std::string> errors_;
  std::string status_ = "idle: press Start";
  Frame frame_;
  std::vector<std::pair<SnapshotInfo, guidance::LoopSnapshot>> snapshots_;
  size_t next_snapshot_id_ = 1;

  std::function<void()> wake_ui_;

  std::atomic<bool> running_{false};
  std::atomic<bool> has_run_{false};
  std::atomic<bool> busy_{false};

  std::unique_ptr<guidance::GuideLoop> loop_;  // replaced by the worker thread under mutex_; post() reads it
  // Owned by the worker thread.
  app::MemberCache members_;
  std::shared_ptr<generators::Generator> generator_;
  std::shared_ptr<guidance::Guide> guide_;
  // A diffusion run instead of loop_: its model (kept while the file and device stay the same) and sampler.
  std::unique_ptr<app::DiffusionRender> diffusion_;  // replaced under mutex_, like loop_
  std::shared_ptr<generators::diffusion::DiffusionModel> diffusion_model_;
  std::string diffusion_key_;
  double its_ = 0.0;

  std::thread thread_;  // last: started in the constructor body, once every member above exists
};

}  // namespace clipguide::studio
