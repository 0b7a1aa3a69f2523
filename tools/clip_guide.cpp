// clip-guide: batch renders steered by CLIP, with the flags VQGAN+CLIP (nerdyrodent generate.py) users
// know. Thin: flags (or a TOML config, or a PNG's stored settings) → Options → generator + Guide +
// GuideLoop → images written atomically with their settings in the PNG metadata; optionally a video of the
// run (tools/video_writer: ffmpeg) and generate.py's zoom video. Ctrl-C saves (image and video) and exits.
#include "clipnet/default_model.h"
#include "clipnet/device.h"
#include "clipnet/error.h"
#include "clipnet/image_io.h"
#include "generators/generator.h"
#include "guidance/guide.h"
#include "guidance/guide_loop.h"
#include "tools/cli.h"
#include "tools/video_writer.h"

#include <ATen/Context.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/affine_grid_generator.h>
#include <ATen/ops/grid_sampler.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/roll.h>
#include <ATen/ops/zeros.h>
#include <ATen/core/grad_mode.h>
#include <CLI/CLI.hpp>
#include <torch/nn/functional/upsampling.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>
#include <sstream>

namespace cg = clipguide;
namespace cn = clipguide::clipnet;
namespace gd = clipguide::guidance;
namespace gen = clipguide::generators;

namespace {

constexpr const char* kSettingsKey = "clipguide:settings";  // PNG text chunk holding the run's TOML settings

struct Options {
  std::string prompts;                    // "text[:weight[:stop]]|..."; '^' separates story phases
  std::string image_prompts;              // "path[:weight[:stop]]|..."
  std::string prompts_file;               // one prompt spec per line: one image each, in one process
  int64_t iterations = 500;               // optimisation steps
  int64_t trials = 1;                     // > 1: the first trial_steps steps from this many random starts, the best kept
  int64_t trial_steps = 50;               // steps of each trial (part of iterations; at most all of them)
  std::vector<int64_t> size{256, 256};    // width height (rounded to the generator's factor)
  int64_t seed = -1;                      // -1: a random seed, printed
  std::string output = "output.png";      // image file (format from the extension)
  double learning_rate = 0.1;             // optimiser step size
  std::string optimiser = "adam";         // adam, adamw, sgd, rmsprop, adagrad
  int64_t num_cuts = 32;                  // cutouts per step
  double cut_power = 1.0;                 // cutout size exponent
  double cut_min = 0.0;                   // smallest cutout side as a fraction of the image (0: model size)
  std::string cut_method = "latest";      // random, latest, disco
  std::string augments = "Af,Pe,Ji,Er";   // augmentation list (see guidance/cutouts.h); "none" for none
  std::string init_image;                 // start from this image
  std::string init_noise;                 // "pixels" or "gradient": start from noise
  double init_weight = 0.0;               // keep close to the init image (decays over steps)
  double tv_weight = 0.0;                 // total-variation smoothness
  int64_t save_every = 50;                // write the image every N steps (0: only at the end)
  int64_t change_prompt_every = 0;        // story mode: next '^' phase every N steps
  std::vector<std::string> clip_models;   // CLIP weight file or folder, "path[:weight]", repeatable (ensemble); none: the shipped model
  std::string vocab;                      // BPE vocabulary (default: beside the model)
  std::string generator;                  // vqgan, pixel, fourier, torchscript (default: vqgan with a checkpoint, else pixel)
  std::string vqgan_config;               // taming YAML (optional: inferred from the checkpoint)
  std::string vqgan_checkpoint;           // taming .ckpt or .safetensors
  std::string generator_weights;          // weights for other generators (torchscript module)
  std::vector<std::string> generator_options;  // key=value settings passed to the generator
  std::string device = "auto";            // cpu, cuda or auto
  // Speed and memory (GuideOptions / GeneratorOptions): same results up to rounding.
  std::string precision = "fp32";         // fp32, or bf16: CLIP forwards and the generator's network under autocast
  bool channels_last = false;             // the generator's network channels-last (faster CUDA convolutions)
  bool cuda_graphs = false;               // CLIP's encode_image forward and backward replayed from CUDA graphs
  int64_t cutn_batches = 1;               // the cutouts of a step in this many micro-batches (less memory)
  bool checkpoint = false;                // the generator's network recomputed in backward (less memory)
  bool deterministic = false;             // deterministic algorithms (slower on GPU)
  bool quiet = false;                     // no progress bar
  // Video (generate.py's names). Frames: with --video the image of every step; with only --zoom_video the
  // image at the start, before every zoom (each zoom_frequency steps) and at the end.
  bool video = false;                     // write a video of the run, one frame per step
  std::string video_output;               // video file, .mp4/.mkv/.mov (default: --output with .mp4)
  double video_length = 10.0;             // seconds; fps = frames / length, clamped to 10..60 (generate.py)
  double output_video_fps = 0.0;          // frame rate of the video (0: from --video_length)
  bool zoom_video = false;                // every zoom_frequency steps: zoom/shift the image, restart from it
  int64_t zoom_start = 0;                 // first step that zooms
  int64_t zoom_frequency = 10;            // steps between zooms (and zoom-video frames)
  double zoom_scale = 0.99;               // > 1 zooms in, < 1 out: centre crop of size / scale, resized back
  int64_t zoom_shift_x = 0;               // pixels to shift right (negative: left) at each zoom, wrapping
  int64_t zoom_shift_y = 0;               // pixels to shift down (negative: up) at each zoom, wrapping
};

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string piece;
  while (std::getline(in, piece, sep)) out.push_back(piece);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

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

at::Tensor load_init_image(const std::string& path, int64_t w, int64_t h) {
  namespace F = torch::nn::functional;
  auto image = cn::read_image(path).unsqueeze(0).to(at::kFloat).div(255);  // (1, 3, H', W')
  return F::interpolate(image, F::InterpolateFuncOptions()
                                   .size(std::vector<int64_t>{h, w})
                                   .mode(torch::kBicubic)
                                   .align_corners(false)
                                   .antialias(true))
      .clamp(0, 1);
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

// One render: prompts (with '^' phases) → image file.
void render(const Options& opt, const std::string& prompt_specs, const std::filesystem::path& output,
            const std::filesystem::path& video_path, const std::string& settings_toml,
            std::vector<gd::GuideMember>& members, c10::Device device, uint64_t seed) {
  // Generator, with the size rounded to its factor.
  gen::GeneratorOptions go;
  go.width = opt.size[0];
  go.height = opt.size[1];
  go.device = device;
  go.seed = seed;
  go.autocast = opt.precision == "bf16" ? at::kBFloat16 : at::kFloat;
  go.channels_last = opt.channels_last;
  go.checkpoint = opt.checkpoint;
  std::string name = opt.generator.empty() ? (opt.vqgan_checkpoint.empty() ? "pixel" : "vqgan") : opt.generator;
  if (name == "vqgan") {
    if (opt.vqgan_checkpoint.empty()) throw cg::Error("--generator vqgan needs --vqgan_checkpoint");
    go.weights = opt.vqgan_checkpoint;
    go.config = opt.vqgan_config;
  } else {
    go.weights = opt.generator_weights;
  }
  go.extra = gen::parse_extra(opt.generator_options, "--generator_option");
  std::shared_ptr<gen::Generator> generator = gen::GeneratorRegistry::create(name, go);
  const int64_t factor = generator->size_factor();
  int64_t w = std::max(factor, opt.size[0] / factor * factor), h = std::max(factor, opt.size[1] / factor * factor);
  if (w != opt.size[0] || h != opt.size[1]) {
    std::cerr << "clip-guide: size " << opt.size[0] << "x" << opt.size[1] << " rounded to " << w << "x" << h
              << " (multiples of " << factor << " for " << name << ")\n";
    go.width = w;
    go.height = h;
    generator = gen::GeneratorRegistry::create(name, go);
  }
  generator->init_random(seed);
  at::Tensor init;
  if (!opt.init_image.empty()) init = load_init_image(opt.init_image, w, h);
  else if (!opt.init_noise.empty()) init = noise_image(opt.init_noise, w, h, seed);
  if (init.defined()) generator->init_from_image(init.to(device));

  // The loss.
  gd::GuideOptions options;
  options.autocast = opt.precision == "bf16" ? at::kBFloat16 : at::kFloat;
  options.cuda_graphs = opt.cuda_graphs;
  options.cutn_batches = opt.cutn_batches;
  options.cutouts.cutn = opt.num_cuts;
  options.cutouts.cut_pow = opt.cut_power;
  options.cutouts.min_size = opt.cut_min;
  options.cutouts.method = gd::parse_cut_method(opt.cut_method);
  options.augments = gd::parse_augments(opt.augments);
  options.tv_weight = opt.tv_weight;
  options.init_weight = opt.init_weight;
  if (opt.init_weight != 0) {
    if (!init.defined()) throw cg::Error("--init_weight needs --init_image or --init_noise");
    options.init_image = init.to(device);
  }
  options.seed = seed;
  auto guide = std::make_shared<gd::Guide>(members, options);

  // Prompts: '^' separates story phases, each a '|' list; image prompts join every phase.
  std::vector<std::vector<gd::GuidePrompt>> phases;
  for (const auto& phase : split(prompt_specs, '^')) {
    std::vector<gd::GuidePrompt> prompts = gd::text_prompts(phase);
    for (const auto& spec : gd::parse_prompts(opt.image_prompts)) {
      prompts.push_back(gd::GuidePrompt::from_spec(spec, /*image=*/true));
    }
    if (prompts.empty()) throw cg::Error("no prompts: give --prompts text and/or --image_prompts files");
    phases.push_back(std::move(prompts));
  }
  if (phases.empty()) throw cg::Error("no prompts: give --prompts text and/or --image_prompts files");
  guide->set_prompts(phases[0]);

  gd::LoopSettings settings;
  settings.optimizer = opt.optimiser;
  settings.learning_rate = opt.learning_rate;
  gd::GuideLoop loop(generator, guide, settings);

  const std::map<std::string, std::string> metadata = {{kSettingsKey, settings_toml}};
  const bool bar = !opt.quiet && isatty(STDERR_FILENO);
  size_t phase = 0;
  auto save = [&](const at::Tensor& image) { cn::write_image(output, image[0].cpu(), metadata); };

  // Video: every step's image (--video), or the zoom video's frames at the start, before each zoom and at the end.
  auto current_image = [&] {  // (1, 3, H, W): what the generator renders now
    at::NoGradGuard no_grad;
    return generator->render().detach();
  };
  std::unique_ptr<cg::tools::VideoWriter> video;
  const bool every_step = opt.video;
  if (opt.video || opt.zoom_video) {
    const at::Tensor first = current_image();  // the frame size is what the generator renders
    const int64_t n = opt.iterations;
    const int64_t frames = every_step ? std::max<int64_t>(n, 1) : (n == 0 ? 1 : 2 + (n - 1) / opt.zoom_frequency);
    cg::tools::VideoOptions vo;
    vo.width = first.size(3);
    vo.height = first.size(2);
    vo.fps = opt.output_video_fps > 0 ? opt.output_video_fps : std::clamp(frames / opt.video_length, 10.0, 60.0);
    vo.comment = prompt_specs;
    video = std::make_unique<cg::tools::VideoWriter>(video_path, vo);
  }
  // generate.py's zoom video: at step i (every zoom_frequency steps from zoom_start) the current image is
  // zoomed and shifted, the generator re-initialised from it and the optimiser started afresh.
  int64_t last_frame = -1;
  auto zoom_event = [&](int64_t i) {
    if (!opt.zoom_video || i % opt.zoom_frequency != 0) return;
    at::Tensor image = current_image();
    if (!every_step) {
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
    if (!opt.quiet) {
      std::cerr << "clip-guide: " << choice.scores.size() << " trials of " << steps << " steps, losses";
      for (double score : choice.scores) std::cerr << " " << std::fixed << std::setprecision(4) << score;
      std::cerr << "; continuing trial " << choice.best << " (seed " << gd::trial_seed(seed, choice.best) << ")\n";
    }
  }
  loop.run(opt.iterations - loop.steps_done(), [&](const gd::LoopProgress& p) {
    if (g_interrupted.load()) loop.request_stop();
    if (every_step) video->write(p.image);
    if (opt.change_prompt_every > 0 && p.step % opt.change_prompt_every == 0 && phase + 1 < phases.size()) {
      guide->set_prompts(phases[++phase]);
    }
    if (opt.save_every > 0 && p.step % opt.save_every == 0) save(p.image);
    if (bar || (!opt.quiet && (p.step % std::max<int64_t>(opt.save_every, 1) == 0 || p.step == opt.iterations))) {
      const int width = 30;
      int filled = static_cast<int>(width * p.step / std::max<int64_t>(opt.iterations, 1));
      std::ostringstream line;
      line << "[" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << p.step << "/"
           << opt.iterations << "  " << std::fixed << std::setprecision(2) << p.its_per_second << " it/s  loss "
           << std::setprecision(4) << p.report.total;
      for (const auto& pr : p.report.prompts) line << "  [" << pr.label.substr(0, 24) << " sim " << std::setprecision(3) << pr.similarity << "]";
      std::cerr << (bar ? "\r" : "") << line.str() << (bar ? "" : "\n") << std::flush;
    }
    zoom_event(p.step);
  });
  if (bar) std::cerr << "\n";
  at::Tensor last = loop.last_image();
  if (!last.defined()) last = current_image();  // no step done (0 iterations)
  save(last);
  const char* interrupted = g_interrupted.load() ? " (interrupted)" : "";
  std::cerr << "clip-guide: wrote " << output.string() << interrupted << "\n";
  if (video) {
    if (!every_step && last_frame != loop.steps_done()) video->write(current_image());
    if (every_step && video->frames() == 0) video->write(last);
    video->finish();
    std::cerr << "clip-guide: wrote " << video->path().string() << " (" << video->frames() << " frames)" << interrupted
              << "\n";
  }
}

int run(Options opt, const std::string& settings_toml) {
  if (opt.size.size() != 2 || opt.size[0] <= 0 || opt.size[1] <= 0) throw cg::Error("--size: expected WIDTH HEIGHT > 0");
  if (opt.iterations < 0) throw cg::Error("--iterations must be >= 0");
  if (opt.trials < 1) throw cg::Error("--trials: expected >= 1, got " + std::to_string(opt.trials));
  if (opt.trials > 1) {
    if (opt.trial_steps < 0) throw cg::Error("--trial_steps: expected >= 0, got " + std::to_string(opt.trial_steps));
    if (!opt.init_image.empty() || !opt.init_noise.empty() || opt.zoom_video) {
      throw cg::Error("--trials needs random starts: it cannot be combined with --init_image, --init_noise or --zoom_video");
    }
  }
  if (!(opt.video_length > 0)) throw cg::Error("--video_length: expected seconds > 0, got " + std::to_string(opt.video_length));
  if (opt.output_video_fps < 0) throw cg::Error("--output_video_fps: expected >= 0 (0: from --video_length)");
  if (opt.zoom_frequency < 1) throw cg::Error("--zoom_frequency: expected steps >= 1, got " + std::to_string(opt.zoom_frequency));
  if (!(opt.zoom_scale > 0)) throw cg::Error("--zoom_scale: expected > 0, got " + std::to_string(opt.zoom_scale));
  if (opt.zoom_start < 0) throw cg::Error("--zoom_start: expected >= 0");
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
  if (std::all_of(opt.clip_models.begin(), opt.clip_models.end(), [](const std::string& m) { return m.empty(); })) {
    opt.clip_models = {cn::default_model_path().string()};  // the shipped model (clipnet/default_model.h)
  }
  if (opt.deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  const c10::Device device = cn::parse_device(opt.device);
  uint64_t seed = opt.seed >= 0 ? static_cast<uint64_t>(opt.seed) : std::random_device{}();
  if (opt.seed < 0) std::cerr << "clip-guide: seed " << seed << "\n";

  std::vector<gd::GuideMember> members;
  for (const auto& spec : opt.clip_models) {
    if (spec.empty()) continue;
    auto [path, weight] = gd::split_member_spec(spec);
    cn::ClipLoadOptions load;
    load.device = device;
    std::filesystem::path vocab = opt.vocab.empty() ? std::filesystem::path(path) : std::filesystem::path(opt.vocab);
    if (opt.vocab.empty() && !std::filesystem::is_directory(path)) {
      throw cg::Error("--vocab is required for '" + path + "' (OpenAI's bpe_simple_vocab_16e6.txt.gz or a vocab.json)");
    }
    members.push_back(gd::load_member(path, vocab, weight, load));
  }

  std::signal(SIGINT, on_sigint);
  if (!opt.prompts_file.empty()) {
    std::ifstream in(opt.prompts_file);
    if (!in) throw cg::Error("--prompts_file: cannot read '" + opt.prompts_file + "'");
    std::string line;
    int64_t index = 0;
    while (std::getline(in, line) && !g_interrupted.load()) {
      if (line.find_first_not_of(" \t\r") == std::string::npos || line[line.find_first_not_of(" \t")] == '#') continue;
      const int64_t i = index++;
      render(opt, line, numbered(opt.output, i), video_path.empty() ? video_path : numbered(video_path, i),
             settings_toml, members, device, seed);
    }
    if (index == 0) throw cg::Error("--prompts_file '" + opt.prompts_file + "' has no prompts");
  } else {
    render(opt, opt.prompts, opt.output, video_path, settings_toml, members, device, seed);
  }
  return g_interrupted.load() ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a dead ffmpeg is reported by VideoWriter, not a silent death
  Options opt;
  CLI::App app{"clip-guide: render images steered towards text (and image) prompts by CLIP"};
  app.option_defaults()->always_capture_default();
  // Every long flag is accepted with underscores (VQGAN+CLIP's spelling) and with dashes.
  auto names = [](const std::string& flag, const std::string& shorts = "") {
    std::string dashed = flag;
    std::replace(dashed.begin(), dashed.end(), '_', '-');
    std::string out = (shorts.empty() ? "" : shorts + ",") + "--" + flag;
    if (dashed != flag) out += ",--" + dashed;
    return out;
  };
  app.add_option(names("prompts", "-p") + ",--prompt", opt.prompts, "Text prompts 'text[:weight[:stop]]|...'; '^' separates story phases. A ':' followed by a non-number stays in the text ('16:9', URLs); a text ending in ':number' takes it as its weight");
  app.add_option(names("image_prompts"), opt.image_prompts, "Image prompts 'path[:weight[:stop]]|...'");
  app.add_option(names("prompts_file"), opt.prompts_file, "File with one prompt spec per line: renders output-0.png, output-1.png, ...");
  app.add_option(names("iterations", "-i"), opt.iterations, "Optimisation steps");
  app.add_option(names("trials"), opt.trials, "Random starts tried for the first --trial_steps steps; the one CLIP scores best goes on (for weak models)");
  app.add_option(names("trial_steps"), opt.trial_steps, "Steps of each --trials start (counted in --iterations)");
  app.add_option(names("size", "-s"), opt.size, "Width and height in pixels")->expected(2);
  app.add_option(names("seed"), opt.seed, "Random seed (-1: random, printed)");
  app.add_option(names("output", "-o"), opt.output, "Output image file");
  app.add_option(names("learning_rate") + ",--lr", opt.learning_rate, "Optimiser learning rate");
  app.add_option(names("optimiser") + ",--optimizer", opt.optimiser, "adam, adamw, sgd, rmsprop or adagrad");
  app.add_option(names("num_cuts") + ",--cutn", opt.num_cuts, "Cutouts per step");
  app.add_option(names("cut_power") + ",--cut_pow", opt.cut_power, "Cutout size exponent (<1: larger cutouts)");
  app.add_option(names("cut_min"), opt.cut_min, "Smallest cutout side as a fraction of the image (0: the CLIP input size)");
  app.add_option(names("cut_method"), opt.cut_method, "random, latest or disco");
  app.add_option(names("augments"), opt.augments, "Augmentations, e.g. 'Af,Pe,Ji,Er' or 'flip,affine:0.7,noise'; 'none'");
  app.add_option(names("init_image") + ",--ii", opt.init_image, "Start from this image");
  app.add_option(names("init_noise"), opt.init_noise, "Start from noise: pixels or gradient");
  app.add_option(names("init_weight"), opt.init_weight, "Stay close to the initial image (decays)");
  app.add_option(names("tv_weight"), opt.tv_weight, "Total-variation smoothness weight");
  app.add_option(names("save_every"), opt.save_every, "Write the image every N steps (0: only at the end)");
  app.add_option(names("change_prompt_every"), opt.change_prompt_every, "Story mode: move to the next '^' phase every N steps");
  app.add_option(names("clip_model", "-m"), opt.clip_models, "CLIP weights 'path[:weight]' (repeatable: an ensemble); default: the shipped shapes-clip model");
  app.add_option(names("vocab"), opt.vocab, "BPE vocabulary (bpe_simple_vocab_16e6.txt.gz, vocab.json, tokenizer.json)");
  app.add_option(names("generator"), opt.generator, "vqgan, pixel, fourier, primitives or torchscript (default: vqgan with --vqgan_checkpoint, else pixel; the shipped model's clip-guide.toml picks primitives)");
  app.add_option(names("vqgan_config"), opt.vqgan_config, "taming-transformers YAML (optional)");
  app.add_option(names("vqgan_checkpoint"), opt.vqgan_checkpoint, "taming-transformers .ckpt or .safetensors");
  app.add_option(names("generator_weights"), opt.generator_weights, "Weights of the chosen generator (torchscript: the module)");
  app.add_option(names("generator_option"), opt.generator_options, "Generator setting key=value (repeatable)");
  app.add_option(names("device"), opt.device, "cpu, cuda or auto");
  app.add_option(names("precision"), opt.precision, "fp32, or bf16: CLIP and the generator's network under bf16 autocast (weights and loss stay fp32)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_flag(names("channels_last"), opt.channels_last, "The generator's network channels-last (faster CUDA convolutions)");
  app.add_flag(names("cuda_graphs"), opt.cuda_graphs, "Replay CLIP's forward and backward from CUDA graphs (CUDA; no prompt masks)");
  app.add_option(names("cutn_batches"), opt.cutn_batches, "Cutouts of a step in this many micro-batches: less memory, same gradient")
      ->check(CLI::PositiveNumber);
  app.add_flag(names("checkpoint"), opt.checkpoint, "Recompute the generator's network in backward (vqgan): less memory, same gradient");
  app.add_flag(names("deterministic", "-d"), opt.deterministic, "Deterministic algorithms");
  app.add_flag(names("quiet", "-q"), opt.quiet, "No progress output");
  app.add_flag(names("video"), opt.video, "Write a video of the run through ffmpeg: one frame per step");
  app.add_option(names("video_output"), opt.video_output, "Video file, .mp4, .mkv or .mov (default: --output with .mp4)");
  app.add_option(names("video_length"), opt.video_length, "Video length in seconds (fps = frames / length, 10 to 60)");
  app.add_option(names("output_video_fps"), opt.output_video_fps, "Video frame rate (0: from --video_length)");
  app.add_flag(names("zoom_video"), opt.zoom_video, "Zoom video: every --zoom_frequency steps zoom/shift the image and restart from it; frames to the video");
  app.add_option(names("zoom_start"), opt.zoom_start, "Step of the first zoom");
  app.add_option(names("zoom_frequency") + "," + names("zoom_save_every"), opt.zoom_frequency, "Steps between zooms (and zoom-video frames)");
  app.add_option(names("zoom_scale"), opt.zoom_scale, "Zoom factor per zoom (>1 in, <1 out)");
  app.add_option(names("zoom_shift_x"), opt.zoom_shift_x, "Pixels to shift right per zoom (negative: left), wrapping");
  app.add_option(names("zoom_shift_y"), opt.zoom_shift_y, "Pixels to shift down per zoom (negative: up), wrapping");
  // --from-png FILE: the settings a PNG stores become the config file (flags on the command line still win).
  std::string from_png;
  app.add_option("--from-png,--from_png", from_png, "Reproduce the settings stored in a PNG written by clip-guide")
      ->configurable(false);
  // Without --clip_model (and without --from-png), the shipped model is used with the settings it renders
  // best with (<model>/clip-guide.toml) as the config defaults; --config replaces them, flags override.
  std::string config_default;
  std::filesystem::path png_settings;  // --from-png's settings as a temporary TOML, removed once parsed
  try {
    if (!cg::cli::flag_given(argc, argv, {"-m", "--clip_model", "--clip-model", "--from-png", "--from_png"})) {
      if (auto shipped = cg::cli::shipped_model()) config_default = shipped->settings;
    }
    for (int i = 1; i + 1 < argc; ++i) {
      std::string a = argv[i];
      if (a != "--from-png" && a != "--from_png") continue;
      auto meta = cn::read_image_metadata(argv[i + 1]);
      auto it = meta.find(kSettingsKey);
      if (it == meta.end()) {
        throw cg::Error(std::string("--from-png '") + argv[i + 1] + "' has no clip-guide settings in its metadata");
      }
      png_settings = std::filesystem::temp_directory_path() / ("clip-guide-" + std::to_string(getpid()) + ".toml");
      std::ofstream(png_settings) << it->second;
      config_default = png_settings.string();
    }
  } catch (const std::exception& e) {
    return cg::cli::report("clip-guide", e);
  }
  app.set_config("--config", config_default, "TOML file with the same settings as the flags (flags given on the command line win)");

  auto parsed = cg::cli::parse(app, argc, argv, "clip-guide");
  if (!png_settings.empty()) {
    std::error_code ignored;
    std::filesystem::remove(png_settings, ignored);
  }
  if (parsed) return *parsed;
  try {
    std::string settings = app.config_to_str(/*default_also=*/true, /*write_description=*/false);
    return run(opt, settings);
  } catch (const std::exception& e) {
    return cg::cli::report("clip-guide", e);
  }
}
