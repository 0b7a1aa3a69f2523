// clip-guide: batch renders steered by CLIP, with the flags VQGAN+CLIP (nerdyrodent generate.py) users
// know. Thin: flags (or a TOML config, or a PNG's stored settings) → Options → generator + Guide +
// GuideLoop → images written atomically with their settings in the PNG metadata; optionally a video of the
// run (tools/video_writer: ffmpeg) and generate.py's zoom video. Ctrl-C saves (image and video) and exits.
#include "app/cli.h"
#include "app/diffusion_run.h"
#include "app/memory_plan.h"
#include "app/session.h"
#include "app/settings.h"
#include "clipnet/default_model.h"
#include "clipnet/train/distributed.h"
#include "core/device.h"
#include "core/error.h"
#include "core/image_io.h"
#include "core/io/weights.h"
#include "core/memory.h"
#include "generators/generator.h"
#include "guidance/guide.h"
#include "guidance/guide_loop.h"
#include "tools/video_writer.h"

#include <ATen/Context.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/affine_grid_generator.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/grid_sampler.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/roll.h>
#include <ATen/ops/zeros.h>
#include <ATen/core/grad_mode.h>
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>

namespace cg = clipguide;
namespace cn = clipguide::clipnet;
namespace gd = clipguide::guidance;
namespace gen = clipguide::generators;

namespace {


using Options = cg::app::RunSettings;  // every setting, its flags and TOML keys: app/settings.h

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

// (1, 3, H, W) in [0, 1]: VQGAN+CLIP's "pixels" (uniform random pixels) or "gradient" (smooth random ramps).
at::Tensor noise_image(const std::string& kind, int64_t w, int64_t h, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  if (kind == "pixels") return at::rand({1, 3, h, w}, g);
  if (kind == "gradient") {
    auto c = at::rand({2, 3, 1, 1}, g);  // two random colours, blended top to bottom
    auto t = at::linspace(0, 1, h).view({1, 1, h, 1});
    return (c[0] * (1 - t) + c[1] * t).expand({1, 3, h, w}).contiguous();
  }
  throw cg::Error("--init_noise: expected pixels or gradient, got '" + kind + "'");
}

// generate.py's zoom_at + ImageChops.offset on (B, 3, H, W) in [0, 1]: the centre crop of size
// (W / scale, H / scale), black outside the image when scale < 1, resized back to W x H (bicubic); then
// shifted right and down by (shift_x, shift_y) pixels, wrapping around the edges.
at::Tensor zoom_image(const at::Tensor& image, double scale, int64_t shift_x, int64_t shift_y) {
  at::NoGradGuard no_grad;
  at::Tensor out = image;
  if (scale != 1.0) {
    at::Tensor theta = at::zeros({image.size(0), 2, 3}, image.options());  // output coords → input coords
    theta.select(1, 0).select(1, 0).fill_(1.0 / scale);
    theta.select(1, 1).select(1, 1).fill_(1.0 / scale);
    at::Tensor grid = at::affine_grid_generator(theta, image.sizes(), /*align_corners=*/false);  // (B, H, W, 2)
    out = at::grid_sampler(image, grid, /*interpolation: bicubic*/ 2, /*padding: zeros*/ 0, /*align_corners=*/false)
              .clamp(0, 1);
  }
  if (shift_x != 0 || shift_y != 0) out = at::roll(out, {shift_y, shift_x}, {2, 3});
  return out;
}

std::filesystem::path numbered(const std::filesystem::path& path, int64_t index) {
  auto stem = path.stem().string() + "-" + std::to_string(index);
  return path.parent_path() / (stem + path.extension().string());
}

// The video of a run: `frames` frames of `first`'s size. Its rate is --output_video_fps; above 9 fps and
// above --input_video_fps, the frames go in at --input_video_fps and are motion-interpolated up to it
// (generate.py's rule). Without it: the frames over --video_length (10 to 60 fps).
cg::tools::VideoOptions video_options(const Options& opt, const at::Tensor& first, int64_t frames,
                                      const std::string& comment) {
  cg::tools::VideoOptions vo;
  vo.width = first.size(3);
  vo.height = first.size(2);
  if (opt.output_video_fps > 9 && opt.output_video_fps > opt.input_video_fps) {
    vo.fps = opt.input_video_fps;
    vo.interpolate_fps = opt.output_video_fps;
  } else {
    vo.fps = opt.output_video_fps > 0 ? opt.output_video_fps : std::clamp(frames / opt.video_length, 10.0, 60.0);
  }
  vo.comment = comment;
  return vo;
}

// "[#####.....] 12/200  3.21 it/s  loss 0.9132  [a red circle sim 0.231]"
std::string progress_line(int64_t step, int64_t total, double its_per_second, double loss, const gd::GuideReport& report) {
  const int width = 30;
  const int filled = static_cast<int>(width * step / std::max<int64_t>(total, 1));
  std::ostringstream line;
  line << "[" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << step << "/" << total
       << "  " << std::fixed << std::setprecision(2) << its_per_second << " it/s  loss " << std::setprecision(4) << loss;
  for (const auto& pr : report.prompts) line << "  [" << pr.label.substr(0, 24) << " sim " << std::setprecision(3) << pr.similarity << "]";
  return line.str();
}
std::string progress_line(const gd::LoopProgress& p, int64_t iterations) {
  return progress_line(p.step, iterations, p.its_per_second, p.report.total, p.report);
}

// One image (and its video) from prompts with '^' phases: `generator` (built once per program) starts afresh from `seed`.
void render(const Options& opt, const std::string& prompt_specs, const std::filesystem::path& output,
            const std::filesystem::path& video_path, const std::map<std::string, std::string>& metadata,
            const std::vector<gd::GuideMember>& members, const std::shared_ptr<gen::Generator>& generator,
            c10::Device device, uint64_t seed, cg::train::Communicator& processes) {
  generator->init_random(seed);
  const auto [w, h] = cg::app::image_size(opt, *generator);
  at::Tensor init;
  if (!opt.init_image.empty()) init = cg::app::load_image_resized(opt.init_image, w, h);
  else if (!opt.init_noise.empty()) init = noise_image(opt.init_noise, w, h, seed);
  if (init.defined()) generator->init_from_image(init.to(device));

  // The loss.
  gd::GuideOptions options = cg::app::guide_options(opt, seed);
  if (opt.init_weight != 0) {
    // Without an init image the anchor is the generator's first picture (generate.py anchors its first latent).
    at::NoGradGuard no_grad;
    options.init_image = init.defined() ? init.to(device) : generator->render().detach();
  }
  // Under torchrun every process renders the same image and scores its part of each step's cutouts; the
  // gradients are summed before the optimiser steps, so all take the same steps. Rank 0 writes.
  options.shard = processes.rank();
  options.shards = processes.world_size();
  const bool writer = processes.rank() == 0;
  auto guide = std::make_shared<gd::Guide>(members, options);

  const auto phases = cg::app::prompt_phases(opt, prompt_specs);
  guide->set_prompts(phases[0]);

  gd::GuideLoop loop(generator, guide, cg::app::loop_settings(opt));
  if (processes.world_size() > 1) loop.set_sum_over_processes(cg::app::process_sum(processes));

  const bool quiet = opt.quiet || !writer;
  const bool bar = !quiet && isatty(STDERR_FILENO);
  size_t phase = 0;
  auto save = [&](const at::Tensor& image) {
    if (writer) clipguide::write_image(output, image[0].cpu(), metadata);
  };

  // Video: every step's image (--video), or the zoom video's frames at the start, before each zoom and at the end.
  auto current_image = [&] {  // (1, 3, H, W): what the generator renders now
    at::NoGradGuard no_grad;
    return generator->render().detach();
  };
  std::unique_ptr<cg::tools::VideoWriter> video;
  const bool every_step = opt.video;
  if (writer && (opt.video || opt.zoom_video)) {
    const at::Tensor first = current_image();  // the frame size is what the generator renders
    const int64_t n = opt.iterations;
    const int64_t frames = every_step ? std::max<int64_t>(n, 1) : (n == 0 ? 1 : 2 + (n - 1) / opt.zoom_frequency);
    video = std::make_unique<cg::tools::VideoWriter>(video_path, video_options(opt, first, frames, prompt_specs));
  }
  // generate.py's zoom video: at step i (every zoom_frequency steps from zoom_start) the current image is
  // zoomed and shifted, the generator re-initialised from it and the optimiser started afresh.
  int64_t last_frame = -1;
  auto zoom_event = [&](int64_t i) {
    if (!opt.zoom_video || i % opt.zoom_frequency != 0) return;
    at::Tensor image = current_image();
    if (!every_step && video) {
      video->write(image);
      last_frame = i;
    }
    if (i < opt.zoom_start || i >= opt.iterations || g_interrupted.load()) return;
    generator->init_from_image(zoom_image(image, opt.zoom_scale, opt.zoom_shift_x, opt.zoom_shift_y));
    gd::LoopSnapshot fresh;  // the re-initialised generator with a new optimiser
    fresh.step = loop.steps_done();
    fresh.generator = generator->state();
    fresh.settings = loop.settings();
    loop.restore(fresh);
  };
  zoom_event(0);
  if (opt.trials > 1) {
    // Random starts (trial_seed: seed, then mixed seeds): each runs trial_steps steps, the one CLIP scores best goes on.
    const int64_t steps = std::min(opt.trial_steps, opt.iterations);
    const auto choice = gd::choose_start(loop, opt.trials, steps, seed, /*probe_steps=*/4,
                                         [&](const gd::LoopProgress&) {
                                           if (g_interrupted.load()) loop.request_stop();
                                         });
    if (!quiet) {
      std::cerr << "clip-guide: " << choice.scores.size() << " trials of " << steps << " steps, losses";
      for (double score : choice.scores) std::cerr << " " << std::fixed << std::setprecision(4) << score;
      std::cerr << "; continuing trial " << choice.best << " (seed " << gd::trial_seed(seed, choice.best) << ")\n";
    }
  }
  clipguide::log_since_start("first step starts");  // with CLIPGUIDE_LOG_LOADS: bench/startup_bench.py
  try {
    loop.run(opt.iterations - loop.steps_done(), [&](const gd::LoopProgress& p) {
      if (g_interrupted.load()) loop.request_stop();
      if (every_step && video) video->write(p.image);
      if (opt.change_prompt_every > 0 && p.step % opt.change_prompt_every == 0 && phase + 1 < phases.size()) {
        guide->set_prompts(phases[++phase]);
      }
      if (opt.save_every > 0 && p.step % opt.save_every == 0) save(p.image);
      if (bar || (!quiet && (p.step % std::max<int64_t>(opt.save_every, 1) == 0 || p.step == opt.iterations))) {
        std::cerr << (bar ? "\r" : "") << progress_line(p, opt.iterations) << (bar ? "" : "\n") << std::flush;
      }
      zoom_event(p.step);
    });
  } catch (const gd::NonFiniteLoss& e) {
    // The run stops; the last finite step's image (the loop never stepped on the bad loss) is the output.
    if (bar) std::cerr << "\n";
    const at::Tensor last = loop.last_image();
    if (!last.defined()) throw cg::Error(std::string(e.what()) + "; stopped, nothing written");
    save(last);
    if (video) video->finish();
    throw cg::Error(std::string(e.what()) + "; stopped, and wrote the image of step " + std::to_string(e.step - 1) +
                    " to " + output.string());
  }
  if (bar) std::cerr << "\n";
  at::Tensor last = loop.last_image();
  if (!last.defined()) last = current_image();  // no step done (0 iterations)
  save(last);
  const char* interrupted = g_interrupted.load() ? " (interrupted)" : "";
  if (writer) std::cerr << "clip-guide: wrote " + output.string() + interrupted + "\n";  // one write: processes share stderr
  if (video) {
    if (!every_step && last_frame != loop.steps_done()) video->write(current_image());
    if (every_step && video->frames() == 0) video->write(last);
    video->finish();
    std::cerr << "clip-guide: wrote " << video->path().string() << " (" << video->frames() << " frames)" << interrupted
              << "\n";
  }
}

// One diffusion sample (--generator diffusion): `model` loaded once per program, x_T drawn from `seed`. The
// x0 prediction is written every --save_every steps and is each --video frame; the final sample is the image
// (the last x0 prediction when interrupted before the end).
void render_diffusion(const Options& opt, const std::string& prompt_specs, const std::filesystem::path& output,
                      const std::filesystem::path& video_path, const std::map<std::string, std::string>& metadata,
                      const std::vector<gd::GuideMember>& members, const gen::diffusion::DiffusionModel& model,
                      c10::Device device, uint64_t seed, bool writer) {
  const auto note = [](const std::string& line) { std::cerr << "clip-guide: " + line + "\n"; };
  cg::app::DiffusionRender run(opt, model, members, device, seed, note);
  const auto phases = cg::app::prompt_phases(opt, prompt_specs);
  run.set_prompts(phases[0]);
  const bool quiet = opt.quiet || !writer;
  const bool bar = !quiet && isatty(STDERR_FILENO);
  auto save = [&](const at::Tensor& image) {
    if (writer) clipguide::write_image(output, image[0].cpu(), metadata);
  };
  std::unique_ptr<cg::tools::VideoWriter> video;
  if (writer && opt.video) {
    video = std::make_unique<cg::tools::VideoWriter>(
        video_path, video_options(opt, run.image(), std::max<int64_t>(run.total_steps(), 1), prompt_specs));
  }
  clipguide::log_since_start("first step starts");
  size_t phase = 0;
  at::Tensor x0;
  while (!run.done() && !g_interrupted.load()) {
    const auto p = run.step();
    x0 = p.x0;
    if (video) video->write(p.x0);
    if (opt.change_prompt_every > 0 && p.step % opt.change_prompt_every == 0 && phase + 1 < phases.size()) {
      run.set_prompts(phases[++phase]);
    }
    if (opt.save_every > 0 && p.step % opt.save_every == 0 && !run.done()) save(p.x0);
    if (bar || (!quiet && (p.step % std::max<int64_t>(opt.save_every, 1) == 0 || p.step == p.total))) {
      std::cerr << (bar ? "\r" : "") << progress_line(p.step, p.total, p.its_per_second, p.report.total, p.report.clip)
                << (bar ? "" : "\n") << std::flush;
    }
  }
  if (bar) std::cerr << "\n";
  save(run.done() || !x0.defined() ? run.image() : x0);
  const char* interrupted = g_interrupted.load() ? " (interrupted)" : "";
  if (writer) std::cerr << "clip-guide: wrote " + output.string() + interrupted + "\n";
  if (video) {
    if (video->frames() == 0) video->write(run.image());
    video->finish();
    std::cerr << "clip-guide: wrote " << video->path().string() << " (" << video->frames() << " frames)" << interrupted << "\n";
  }
}

// Several renders (--prompts_file lines, --video_style_dir frames). One process, or one render: each in
// turn, and a single render shares its cutouts over the processes (render()). Several processes and
// renders: render i is made whole by rank i % W (no traffic per step) and written by it; after each round
// the ranks tally what was written (rank 0 reports it), whether Ctrl-C reached any of them (all stop) and
// whether one failed (all stop; that one throws).
void render_queue(size_t count, cg::train::Communicator& processes, bool quiet,
                  const std::function<void(size_t, cg::train::Communicator&)>& render_one) {
  const auto world = static_cast<size_t>(processes.world_size()), rank = static_cast<size_t>(processes.rank());
  if (world == 1 || count < 2) {
    for (size_t i = 0; i < count && !g_interrupted.load(); ++i) render_one(i, processes);
    return;
  }
  cg::train::SingleProcess alone;
  double written = 0;
  for (size_t round = 0; round * world < count; ++round) {
    const size_t i = round * world + rank;
    std::exception_ptr failure;
    bool rendered = false;
    if (i < count && !g_interrupted.load()) {
      try {
        render_one(i, alone);
        rendered = true;
      } catch (...) {
        failure = std::current_exception();
      }
    }
    std::vector<double> tally{rendered ? 1.0 : 0.0, g_interrupted.load() ? 1.0 : 0.0, failure ? 1.0 : 0.0};
    at::Tensor packed = at::from_blob(tally.data(), {3}, at::kDouble);
    processes.all_reduce_sum_(packed);  // in place, into `tally`
    written += tally[0];
    if (rank == 0 && !quiet) {
      std::cerr << "clip-guide: " + std::to_string(static_cast<int64_t>(written)) + " of " + std::to_string(count) +
                       " renders written (" + std::to_string(world) + " processes)\n";
    }
    if (failure) std::rethrow_exception(failure);
    if (tally[2] > 0) throw cg::Error("another process failed (its error is above); stopped");
    if (tally[1] > 0) {
      g_interrupted.store(true);
      return;
    }
  }
}

// --prompts_file: its prompt lines (blank lines and '#' comments skipped); none is an error naming the file.
std::vector<std::string> prompt_file_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw cg::Error("--prompts_file: cannot read '" + path + "'");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    const size_t first = line.find_first_not_of(" \t\r");
    if (first != std::string::npos && line[first] != '#') lines.push_back(line);
  }
  if (lines.empty()) throw cg::Error("--prompts_file '" + path + "' has no prompts");
  return lines;
}

// --video_style_dir with --video: the styled frames that exist, in order (an interrupted run's first ones).
void write_styled_video(const std::vector<std::filesystem::path>& styled, const std::filesystem::path& path,
                        const Options& opt) {
  std::unique_ptr<cg::tools::VideoWriter> video;
  for (const auto& frame : styled) {
    if (!std::filesystem::exists(frame)) break;
    at::Tensor image = clipguide::read_image(frame.string()).to(at::kFloat).div(255);
    if (!video) {
      cg::tools::VideoOptions vo;
      vo.width = image.size(2);
      vo.height = image.size(1);
      vo.fps = opt.input_video_fps;
      if (opt.output_video_fps > opt.input_video_fps) vo.interpolate_fps = opt.output_video_fps;
      vo.comment = opt.prompts;
      video = std::make_unique<cg::tools::VideoWriter>(path, vo);
    }
    video->write(image);
  }
  if (!video) return;
  video->finish();
  std::cerr << "clip-guide: wrote " << video->path().string() << " (" << video->frames() << " frames)\n";
}

// --video_style_dir: its .png and .jpg files (any case), sorted by name.
std::vector<std::filesystem::path> style_frames(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw cg::Error("--video_style_dir: '" + dir + "' is not a folder");
  std::vector<std::filesystem::path> frames;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (entry.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg")) frames.push_back(entry.path());
  }
  if (ec) throw cg::Error("--video_style_dir: cannot list '" + dir + "': " + ec.message());
  if (frames.empty()) throw cg::Error("--video_style_dir: '" + dir + "' has no .png or .jpg frames");
  std::sort(frames.begin(), frames.end());
  return frames;
}

int run(Options opt) {
  cg::app::check(opt);
  clipguide::check_image_output(opt.output, "--output");  // a missing or read-only folder fails now, not after the run
  // Video output: known before anything is loaded, so a missing ffmpeg stops the run before it starts.
  std::filesystem::path video_path;
  if (opt.video || opt.zoom_video) {
    const std::string flag = opt.video ? "--video" : "--zoom_video";
    if (cg::tools::find_program("ffmpeg").empty()) {
      throw cg::Error(flag + " needs ffmpeg, which is not on PATH (Debian: apt-get install ffmpeg)");
    }
    video_path = opt.video_output.empty() ? std::filesystem::path(opt.output).replace_extension(".mp4")
                                          : std::filesystem::path(opt.video_output);
    cg::tools::check_video_path(video_path, opt.video_output.empty() ? "--video_output (from --output)" : "--video_output");
  }
  std::vector<std::filesystem::path> frames;
  if (!opt.video_style_dir.empty()) frames = style_frames(opt.video_style_dir);
  // torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): several processes on one image;
  // without it, a single process.
  const auto processes = cg::train::init_distributed(cg::train::DistributedEnv::from_environment());
  if (opt.deterministic) {
    // Deterministic kernels everywhere (an op without one is an error, not a silent difference); cuBLAS
    // needs its fixed workspace for that, set before its first handle exists.
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  }
  const c10::Device device = cg::app::run_device(opt);
  uint64_t seed = opt.seed >= 0 ? static_cast<uint64_t>(opt.seed) : std::random_device{}();
  if (opt.seed < 0) std::cerr << "clip-guide: seed " << seed << "\n";

  // Built once: every render (each --prompts_file line, each styled frame) reuses the loaded weights.
  const auto note = [](const std::string& line) { std::cerr << "clip-guide: " + line + "\n"; };
  const bool diffusion = cg::app::generator_name(opt) == cg::app::kDiffusion;
  if (diffusion) {
    if (!opt.max_memory.empty()) throw cg::Error("--max_memory plans generator runs; with diffusion use --cutn_batches and --checkpoint");
    if (opt.zoom_video) throw cg::Error("--zoom_video needs a generator to restart from an image; not with diffusion");
    if (opt.trials > 1) throw cg::Error("--trials needs a generator; with diffusion, render several seeds instead");
    if (processes->world_size() > 1 && opt.prompts_file.empty() && frames.empty())
      throw cg::Error("several processes share diffusion renders by --prompts_file or --video_style_dir; one image runs in one process");
  }
  std::optional<gen::diffusion::DiffusionModel> diffusion_model;
  cg::app::RunModels models;
  if (diffusion) {
    models.members = cg::app::load_members(opt, device);
    diffusion_model = cg::app::load_diffusion(opt, device);
  } else {
    models = cg::app::load_models(opt, device, seed, note);
  }
  cg::release_freed_memory();  // the weight files' buffers, before the planner measures and the steps begin
  // --max_memory: --cutn_batches and --checkpoint chosen to fit, before the first step.
  const auto plan = cg::app::apply_memory_plan(opt, models, device, seed, processes->world_size(), note);
  const auto& members = models.members;
  const auto& generator = models.generator;
  // The images record the settings with the seed actually drawn (and the memory plan's choice), and where
  // they ran: enough to make them again.
  Options stored = opt;
  stored.seed = static_cast<int64_t>(seed);  // a drawn seed is 32 bits
  stored.max_memory.clear();
  const auto metadata = cg::app::image_metadata(cg::app::to_toml(stored), device);
  std::signal(SIGINT, on_sigint);
  const auto render_to = [&](const Options& o, const std::string& prompts, const std::filesystem::path& output,
                             const std::filesystem::path& video, cg::train::Communicator& sharing) {
    if (diffusion_model) {
      render_diffusion(o, prompts, output, video, metadata, members, *diffusion_model, device, seed, sharing.rank() == 0);
    } else {
      render(o, prompts, output, video, metadata, members, generator, device, seed, sharing);
    }
  };
  if (!frames.empty()) {
    // Each frame styled in turn from itself (generate.py's video styling): <output stem>/<frame name>.png,
    // and with --video one video of the styled frames, in order.
    const std::filesystem::path out_dir = std::filesystem::path(opt.output).replace_extension("");
    std::filesystem::create_directories(out_dir);
    Options frame_opt = opt;
    frame_opt.video = frame_opt.zoom_video = false;
    frame_opt.quiet = true;
    std::vector<std::filesystem::path> styled;
    for (const auto& frame : frames) styled.push_back(out_dir / std::filesystem::path(frame).filename().replace_extension(".png"));
    render_queue(frames.size(), *processes, opt.quiet, [&](size_t i, cg::train::Communicator& sharing) {
      Options o = frame_opt;
      o.init_image = frames[i].string();
      render_to(o, opt.prompts, styled[i], {}, sharing);
    });
    if (!video_path.empty() && processes->rank() == 0) write_styled_video(styled, video_path, opt);
  } else if (!opt.prompts_file.empty()) {
    const std::vector<std::string> lines = prompt_file_lines(opt.prompts_file);
    render_queue(lines.size(), *processes, opt.quiet, [&](size_t i, cg::train::Communicator& sharing) {
      Options o = opt;
      o.quiet = opt.quiet || processes->rank() != 0;  // dealt out: one progress display, rank 0's
      render_to(o, lines[i], numbered(opt.output, static_cast<int64_t>(i)),
                video_path.empty() ? video_path : numbered(video_path, static_cast<int64_t>(i)), sharing);
    });
  } else {
    render_to(opt, opt.prompts, opt.output, video_path, *processes);
  }
  if (plan) {
    // CPU: the process's peak resident size, and the tensors' peak within it (the allocator's slack, code and
    // kernels' caches make the difference); CUDA: the tensors' peak on the device.
    const int64_t tensors = clipguide::MemoryMeter(device).peak();
    const int64_t peak = device.is_cpu() ? clipguide::peak_resident_bytes() : tensors;
    std::cerr << "clip-guide: peak memory " + clipguide::format_bytes(peak) +
                     (device.is_cpu() ? " resident, tensors " + clipguide::format_bytes(tensors) : std::string()) +
                     " (planned about " + clipguide::format_bytes(plan->predicted) + ", budget " +
                     clipguide::format_bytes(plan->budget) + ")\n";
  }
  return g_interrupted.load() ? 130 : 0;
}

// --from-png FILE: the settings the PNG stores, as a temporary TOML file (removed by the caller).
std::filesystem::path png_settings_file(const std::string& png) {
  auto meta = clipguide::read_image_metadata(png);
  auto it = meta.find(cg::app::kSettingsKey);
  if (it == meta.end()) throw cg::Error("--from-png '" + png + "' has no clip-guide settings in its metadata");
  auto path = std::filesystem::temp_directory_path() / ("clip-guide-" + std::to_string(getpid()) + ".toml");
  std::ofstream(path) << it->second;
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  std::signal(SIGPIPE, SIG_IGN);  // a dead ffmpeg is reported by VideoWriter, not a silent death
  Options opt;
  CLI::App app{"clip-guide: render images steered towards text (and image) prompts by CLIP.\n"
               "Flags are also accepted as VQGAN+CLIP's generate.py spells them (-ip, -cuts, --flag=value, "
               "unambiguous prefixes)"};
  app.option_defaults()->always_capture_default();
  cg::app::add_settings(app, opt);
  std::string from_png;
  app.add_option("--from-png,--from_png", from_png, "Reproduce the settings stored in a PNG written by clip-guide")
      ->configurable(false);
  // Without --clip_model (and without --from-png), the shipped model is used with the settings it renders
  // best with (<model>/clip-guide.toml) as the config defaults; --config replaces them, flags override.
  std::string config_default;
  std::filesystem::path png_settings;  // --from-png's settings as a temporary TOML, removed once parsed
  std::vector<std::string> args;
  try {
    args = cg::app::normalise_args(argc, argv, {"--config", "--from-png", "--from_png", "--help"});
    if (!cg::app::flag_given(args, {"--clip_model", "--from-png", "--from_png"})) {
      if (auto shipped = cg::app::shipped_model()) config_default = shipped->settings;
    }
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == "--from-png" || args[i] == "--from_png") config_default = (png_settings = png_settings_file(args[i + 1])).string();
    }
  } catch (const CLI::ParseError& e) {
    std::cerr << "clip-guide: error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {
    return cg::app::report("clip-guide", e);
  }
  app.set_config("--config", config_default, "TOML file with the same settings as the flags (flags given on the command line win)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not silently ignored

  auto parsed = cg::app::parse(app, args, "clip-guide");
  if (!png_settings.empty()) {
    std::error_code ignored;
    std::filesystem::remove(png_settings, ignored);
  }
  if (parsed) return *parsed;
  try {
    cg::app::check(opt);
    return run(opt);
  } catch (const std::exception& e) {
    return cg::app::report("clip-guide", e);
  }
}
