// clip-studio's optimisation thread (see worker.h): builds runs, steps the GuideLoop when running (or asked
// for one step), runs the tasks posted to the loop also while paused, and publishes the latest frame under a
// mutex for the UI to poll. Edits of a run are GuideLoop tasks: the loop is their one queue.
// Shapes: H x W pixels.
#include "gui/worker.h"

#include "core/device.h"
#include "core/error.h"
#include "core/memory.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <utility>

namespace clipguide::studio {

Worker::Worker() { thread_ = std::thread([this] { thread_main(); }); }

Worker::~Worker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Worker::restart(app::RunSettings run, std::vector<guidance::GuidePrompt> prompts, guidance::LoopSettings settings,
                     guidance::GuideOptions options, bool running) {
  busy_.store(true);
  running_.store(running);
  std::lock_guard<std::mutex> lock(mutex_);
  early_.clear();  // edits meant for a run that was never built
  step_requests_ = 0;
  Frame fresh;     // the old run's image is not shown while the new one builds
  fresh.version = frame_.version + 1;
  frame_ = fresh;
  restart_ = [this, run = std::move(run), prompts = std::move(prompts), settings, options]() mutable {
    try {
      build(run, std::move(prompts), settings, options);
    } catch (const std::exception& e) {
      running_.store(false);
      set_status("no run: the last start failed");
      report_error("start", e);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (!restart_) {
      early_.clear();  // a failed build: its edits have no run
      busy_.store(false);
    }
  };
  wake_.notify_all();
}

void Worker::set_running(bool running) {
  running_.store(running);
  wake_.notify_all();
}

void Worker::single_step() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++step_requests_;
  wake_.notify_all();
}

namespace {
guidance::GuideLoop::LoopTask as_loop_task(Task task) {
  return [task = std::move(task)](guidance::GuideLoop& loop) { task(RunRef{&loop, nullptr, loop.guide()}); };
}
}  // namespace

void Worker::post(Task task) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (busy_.load()) {
    early_.push_back(std::move(task));  // for the run being built: handed to it by build()
  } else if (loop_) {
    loop_->post(as_loop_task(std::move(task)));
  } else if (diffusion_) {
    diffusion_tasks_.push_back(std::move(task));
  }
  wake_.notify_all();
}

void Worker::update_settings(const guidance::LoopSettings& settings) {
  post([settings](RunRef run) {
    if (run.loop) run.loop->apply_settings(settings);
  });
}

void Worker::update_guide_options(const guidance::GuideOptions& options) {
  post([options](RunRef run) {
    if (run.loop) run.guide.set_options(options);  // a diffusion run sets its Guide's options every step
  });
}

void Worker::take_snapshot() {
  post([this](RunRef run) {
    if (!run.loop) throw Error("snapshots are for optimisation runs, not diffusion");
    auto snap = run.loop->snapshot();
    std::lock_guard<std::mutex> lock(mutex_);
    snapshots_.push_back({SnapshotInfo{snap.step, next_snapshot_id_++}, std::move(snap)});
  });
}

void Worker::restore_snapshot(size_t id) {
  post([this, id](RunRef run) {
    if (!run.loop) throw Error("snapshots are for optimisation runs, not diffusion");
    guidance::GuideLoop& loop = *run.loop;
    guidance::LoopSnapshot snap;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      bool found = false;
      for (const auto& [info, s] : snapshots_) {
        if (info.id == id) {
          snap = s;
          found = true;
        }
      }
      if (!found) throw Error("restore: no snapshot #" + std::to_string(id));
    }
    loop.restore(snap);  // between steps, on the stepping thread
    c10::NoGradGuard no_grad;
    publish(loop.render_image(), nullptr);  // show the restored image at once, also when paused
  });
}

std::string Worker::status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

Frame Worker::frame() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return frame_;
}

std::vector<SnapshotInfo> Worker::snapshots() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<SnapshotInfo> out;
  for (const auto& s : snapshots_) out.push_back(s.first);
  return out;
}

std::vector<std::string> Worker::take_errors() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(errors_, {});
}

void Worker::set_wake(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mutex_);
  wake_ui_ = std::move(wake);
}

void Worker::wake_ui() {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wake = wake_ui_;
  }
  if (wake) wake();
}

void Worker::set_status(std::string status) {
  std::lock_guard<std::mutex> lock(mutex_);
  status_ = std::move(status);
}

void Worker::report_error(const std::string& what, const std::exception& e) {
  std::string text = error_text(e);
  for (auto& c : text) {
    if (c == '\n') c = ' ';
  }
  std::lock_guard<std::mutex> lock(mutex_);
  errors_.push_back(what + ": " + text);
}

void Worker::build(const app::RunSettings& run, std::vector<guidance::GuidePrompt> prompts,
                   const guidance::LoopSettings& settings, const guidance::GuideOptions& options) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    loop_.reset();
    diffusion_.reset();
    diffusion_tasks_.clear();
  }
  guide_.reset();
  generator_.reset();
  has_run_.store(false);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    snapshots_.clear();
    Frame fresh;  // a new run: no image until it renders
    fresh.version = frame_.version + 1;
    frame_ = fresh;
  }
  if (std::all_of(run.clip_models.begin(), run.clip_models.end(), [](const std::string& m) { return m.empty(); })) {
    throw Error("no CLIP model: add one (path to weights) and start again");
  }
  const c10::Device device = app::run_device(run);
  const uint64_t seed = static_cast<uint64_t>(std::max<int64_t>(run.seed, 0));
  // A restart for a new size, seed or generator does not reload CLIP.
  const auto& members = members_.get(run, device, [this](const std::string& s) { set_status(s); });
  if (app::generator_name(run) == app::kDiffusion) return build_diffusion(run, std::move(prompts), device, seed, members);
  set_status("building generator " + app::generator_name(run));
  std::shared_ptr<generators::Generator> generator = app::make_generator(run, device, seed);
  clipguide::release_freed_memory();  // the weight files' buffers (core/memory.h)

  guidance::GuideOptions guide_options = options;
  guide_options.seed = seed;
  set_status("encoding prompts");
  auto guide = std::make_shared<guidance::Guide>(members, guide_options);
  guide->set_prompts(std::move(prompts));
  auto loop = std::make_unique<guidance::GuideLoop>(generator, guide, settings);
  generator_ = generator;
  guide_ = guide;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    loop_ = std::move(loop);
    if (!restart_) {  // else the edits are for the newer run asked for meanwhile
      for (auto& task : early_) loop_->post(as_loop_task(std::move(task)));
      early_.clear();
      busy_.store(false);  // from here on post() goes to the loop itself
    }
  }
  its_ = 0.0;
  has_run_.store(true);
  set_status("ready");
  c10::NoGradGuard no_grad;
  publish(loop_->render_image(), nullptr);
}

void Worker::build_diffusion(const app::RunSettings& run, std::vector<guidance::GuidePrompt> prompts,
                             c10::Device device, uint64_t seed, const std::vector<guidance::GuideMember>& members) {
  const std::string key = run.diffusion_model + "|" + run.diffusion_config + "|" + device.str();
  if (!diffusion_model_ || key != diffusion_key_) {  // a restart for new prompts, size or seed keeps the model
    diffusion_model_.reset();
    set_status("loading diffusion model " + run.diffusion_model);
    diffusion_model_ = std::make_shared<generators::diffusion::DiffusionModel>(app::load_diffusion(run, device));
    diffusion_key_ = key;
    clipguide::release_freed_memory();
  }
  diffusion_model_->unet->set_checkpointing(run.checkpoint);
  set_status("encoding prompts");
  auto render = std::make_unique<app::DiffusionRender>(run, *diffusion_model_, members, device, seed);
  render->set_prompts(std::move(prompts));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    diffusion_ = std::move(render);
    if (!restart_) {
      for (auto& task : early_) diffusion_tasks_.push_back(std::move(task));
      early_.clear();
      busy_.store(false);
    }
  }
  its_ = 0.0;
  has_run_.store(true);
  set_status("ready");
  publish(diffusion_->image(), nullptr);
}

size_t Worker::run_diffusion_tasks() {
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks.swap(diffusion_tasks_);
  }
  for (auto& task : tasks) {
    try {
      task(RunRef{nullptr, diffusion_.get(), diffusion_->guide()});
    } catch (const std::exception& e) {
      report_error("edit", e);
    }
  }
  return tasks.size();
}

int64_t Worker::steps_done() const {
  return loop_ ? loop_->steps_done() : diffusion_ ? diffusion_->steps_taken() : 0;
}

void Worker::step_diffusion() {
  if (diffusion_->done()) {
    running_.store(false);
    set_status("finished: " + std::to_string(diffusion_->total_steps()) + " steps");
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  const auto p = diffusion_->step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double rate = seconds > 0 ? 1.0 / seconds : 0.0;
  its_ = its_ == 0.0 ? rate : 0.8 * its_ + 0.2 * rate;
  // The x0 prediction while it samples (what the image is becoming), the sample itself at the end.
  publish(diffusion_->done() ? diffusion_->image() : p.x0, &p.report.clip);
  if (diffusion_->done()) {
    running_.store(false);
    set_status("finished: " + std::to_string(p.total) + " steps");
  } else {
    set_status(running_.load() ? "running" : "paused");
  }
}

void Worker::publish(const at::Tensor& image, const guidance::GuideReport* report) {
  // (1, 3, H, W) in [0, 1] → (H, W, 3) uint8 on the CPU.
  at::Tensor rgb = image[0].detach().clamp(0, 1).mul(255).round().to(at::kByte).permute({1, 2, 0}).contiguous().cpu();
  std::lock_guard<std::mutex> lock(mutex_);
  frame_.version += 1;
  frame_.step = steps_done();
  frame_.rgb = rgb;
  if (report) frame_.report = *report;
  frame_.its_per_second = its_;
}

void Worker::thread_main() {
  using Clock = std::chrono::steady_clock;
  for (;;) {
    std::function<void()> restart;
    bool do_step = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(200), [&] {
        return quit_ || restart_ || step_requests_ > 0 || (loop_ && (running_.load() || loop_->has_posted())) ||
               (diffusion_ && (running_.load() || !diffusion_tasks_.empty()));
      });
      if (quit_) return;
      restart = std::exchange(restart_, nullptr);
    }
    if (restart) {
      restart();
      if (!running_.load()) wake_ui();
      continue;
    }
    if (!loop_ && !diffusion_) {
      std::lock_guard<std::mutex> lock(mutex_);
      step_requests_ = 0;
      continue;
    }
    const size_t edits = loop_ ? loop_->run_posted([this](const std::exception& e) { report_error("edit", e); })
                               : run_diffusion_tasks();
    if (edits > 0 && !running_.load()) wake_ui();  // a paused UI shows the edit's outcome
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (running_.load()) {
        do_step = true;
      } else if (step_requests_ > 0) {
        --step_requests_;
        do_step = true;
      }
    }
    if (!do_step) {
      if (status() != "paused") {
        set_status("paused");
        wake_ui();
      }
      continue;
    }
    try {
      if (diffusion_) {
        step_diffusion();
        if (!running_.load()) wake_ui();
        continue;
      }
      const auto start = Clock::now();
      guidance::GuideReport report = loop_->step();
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const double rate = seconds > 0 ? 1.0 / seconds : 0.0;
      its_ = its_ == 0.0 ? rate : 0.8 * its_ + 0.2 * rate;
      publish(loop_->last_image(), &report);
      set_status(running_.load() ? "running" : "paused");
    } catch (const std::exception& e) {
      running_.store(false);
      set_status("paused after an error");
      report_error("step " + std::to_string(steps_done()), e);
    }
    if (!running_.load()) wake_ui();  // a single step, or the last one before a pause
  }
}

}  // namespace clipguide::studio
