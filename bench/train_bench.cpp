// Training throughput: clipguide's Trainer against open_clip's own training loop (bench/reference/
// train_ref.py: open_clip_train's train_one_epoch with ClipLoss, AdamW in main.py's parameter groups and
// the cosine schedule), same CLIP architecture (default: the shipped shapes-clip model's, a 64 px
// ModifiedResNet), same batch size, same batches: shapes-world pictures rendered once by our loader and
// tokenised once, held in memory by both sides (written as .npy for Python). The loader's own throughput
// is reported apart. Rounds of (ours, reference) run back to back and the median ratio is reported, as the
// machine's speed drifts between runs. --trace FILE records one step's operators. With --scaling: samples/s
// of clip-train under torchrun with 2 processes (1 thread each) against 1 process, the ratio printed.
// Shapes: K distinct batches, B batch, S image side, L context length.
#include "bench_util.h"
#include "clipnet/config.h"
#include "clipnet/train/loader.h"
#include "clipnet/train/shapes_world.h"
#include "clipnet/train/trainer.h"
#include "core/io/npy.h"
#include "core/memory.h"

#include <ATen/Parallel.h>
#include <ATen/ops/cat.h>
#include <CLI/CLI.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace {

namespace fs = std::filesystem;
namespace tr = clipguide::train;
using Clock = std::chrono::steady_clock;

// models/shapes-clip/architecture.json: the model clip-train ships.
const char* kShapesClip = R"({"embed_dim": 128,
  "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
  "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3}})";

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Global samples/s of a clip-train run from its out.jsonl (each step logs its own global samples/s): the
// samples of the steps after `skip` over their time, i.e. the harmonic mean of the logged rates.
double logged_samples_per_s(const fs::path& log, int64_t skip) {
  std::ifstream in(log);
  if (!in) throw std::runtime_error("no log " + log.string());
  std::string line;
  double inverse_sum = 0;
  int64_t steps = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("samples_per_s") || j["step"].get<int64_t>() <= skip) continue;
    inverse_sum += 1 / j["samples_per_s"].get<double>();
    ++steps;
  }
  if (steps == 0) throw std::runtime_error("no timed steps in " + log.string());
  return static_cast<double>(steps) / inverse_sum;
}

}  // namespace

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  std::string python = "python3", model = kShapesClip;
  std::string dir = (fs::temp_directory_path() / "clipguide-train-bench").string();
  std::string clip_train = CLIPGUIDE_CLIP_TRAIN, torchrun, trace_path;
  int64_t batch = 64, steps = 40, warmup = 5, distinct = 4, threads = 0, scaling_steps = 30, workers = 1, rounds = 3;
  bool scaling = false, grad_checkpointing = false, no_reference = false;
  CLI::App app{"train_bench: training samples/s vs open_clip's training loop; --scaling: 2 processes vs 1"};
  app.option_defaults()->always_capture_default();
  app.add_option("--python", python, "Python with open_clip_torch (open_clip_train)");
  app.add_option("--model", model, "Architecture (both sides): config JSON file or text, or a built-in name");
  app.add_option("--dir", dir, "Where the pre-rendered batches and logs are written");
  app.add_option("--batch-size", batch, "Samples per step");
  app.add_option("--steps", steps, "Timed steps per round");
  app.add_option("--rounds", rounds,
                 "Rounds of (ours, reference) timed back to back; the ratio is their median (machine load drifts)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed steps first (fewer than ~5 leave PyTorch's first slow steps in its figure)");
  app.add_option("--distinct", distinct, "Distinct batches rendered (cycled through)");
  app.add_option("--threads", threads, "Intra-op threads on both sides (0: LibTorch's default)");
  app.add_flag("--grad-checkpointing", grad_checkpointing, "Our side with gradient checkpointing (memory vs time)");
  app.add_flag("--no-reference", no_reference, "Our side only (no Python run)");
  app.add_flag("--scaling", scaling, "Also: clip-train under torchrun, 2 processes x 1 thread vs 1 process x 1 thread");
  app.add_option("--scaling-steps", scaling_steps, "Steps per clip-train run of --scaling (the first 5 untimed)");
  app.add_option("--workers", workers, "Loader threads per clip-train process in --scaling");
  app.add_option("--clip-train", clip_train, "clip-train binary for --scaling");
  app.add_option("--torchrun", torchrun, "torchrun for --scaling (default: beside --python)");
  app.add_option("--trace", trace_path, "Record one extra step's operators as a Chrome trace to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
    fs::create_directories(dir);
    if (!model.empty() && model.front() != '{' && fs::is_regular_file(model)) {
      std::ifstream in(model);
      std::stringstream s;
      s << in.rdbuf();
      model = s.str();
    }

    // The trainer (its BPE vocabulary trained on shapes captions, as clip-train does without --vocab).
    tr::TrainOptions o;
    o.model = model;
    o.train_data = "shapes";
    o.batch_size = batch;
    o.steps = 10000;   // the schedule's length; only warmup + steps are run
    o.warmup = 1000;
    o.workers = 0;     // its own loader stays idle: batches come from memory
    o.bpe_captions = 2000;
    o.save_frequency = 0;
    o.grad_checkpointing = grad_checkpointing;
    tr::Trainer trainer(o, nullptr);
    const auto& cfg = trainer.config();
    const int64_t s = cfg.vision.image_size, l = cfg.text.context_length;

    // Batches: rendered, augmented and normalised by the loader (timed: the loader's figure), tokenised.
    tr::LoaderOptions lo;
    lo.batch_size = batch;
    lo.image_size = s;
    lo.num_workers = 2;
    for (int c = 0; c < 3; ++c) lo.mean[c] = cfg.preprocess.mean[c], lo.std[c] = cfg.preprocess.std[c];
    std::vector<at::Tensor> images, tokens;  // K x (B, 3, S, S), K x (B, L)
    double loader_per_s = 0;
    {
      tr::Loader loader(std::make_shared<tr::ShapesWorld>(), lo);
      const auto start = Clock::now();
      for (int64_t k = 0; k < distinct; ++k) {
        auto b = loader.next();
        images.push_back(b->images);
        tokens.push_back(trainer.tokenizer().tokenize(b->captions, l, true));
      }
      loader_per_s = static_cast<double>(distinct * batch) / seconds_since(start);
    }
    clipguide::write_npy(fs::path(dir) / "images.npy", at::cat(images));
    clipguide::write_npy(fs::path(dir) / "tokens.npy", at::cat(tokens));
    {
      std::ofstream(fs::path(dir) / "config.json") << cfg.to_json_text();
      nlohmann::json meta = {{"batch_size", batch}, {"lr", o.lr},       {"wd", o.wd},
                             {"beta1", o.beta1},    {"beta2", o.beta2}, {"eps", o.eps},
                             {"warmup_lr", o.warmup}, {"total_steps", o.steps}};
      std::ofstream(fs::path(dir) / "meta.json") << meta.dump(2);
    }

    for (int64_t i = 0; i < warmup; ++i) trainer.train_step({images[i % distinct]}, {tokens[i % distinct]});
    // Each round times our steps, then the reference's right after, so both see about the same machine.
    std::vector<double> ours_rounds, theirs_rounds, ratios;
    nlohmann::json ref = {{"samples_per_s", 0.0}, {"threads", 0}, {"torch", "-"}, {"open_clip", "-"}};
    for (int64_t r = 0; r < rounds; ++r) {
      const auto start = Clock::now();
      for (int64_t i = 0; i < steps; ++i) trainer.train_step({images[i % distinct]}, {tokens[i % distinct]});
      ours_rounds.push_back(static_cast<double>(steps * batch) / seconds_since(start));
      if (no_reference) continue;
      ref = clipguide::bench::run_reference(
          python + " " CLIPGUIDE_BENCH_DIR "/reference/train_ref.py --dir " + shell_quote(dir) + " --steps " +
          std::to_string(steps) + " --warmup " + std::to_string(warmup) + " --threads " +
          std::to_string(threads > 0 ? threads : at::get_num_threads()));
      theirs_rounds.push_back(ref["samples_per_s"].get<double>());
      ratios.push_back(ours_rounds.back() / theirs_rounds.back());
      std::cout << "  round " << r + 1 << ": clipguide " << ours_rounds.back() << " samples/s, open_clip "
                << ref["samples_per_s"].get<double>() << " samples/s, ratio " << ratios.back() << "x\n";
    }
    const double ours = clipguide::bench::median(ours_rounds);
    if (!trace_path.empty()) {  // one more untimed step, its ops recorded (chrome://tracing or Perfetto)
      torch::autograd::profiler::RecordProfile record(trace_path);
      trainer.train_step({images[0]}, {tokens[0]});
    }

    const double theirs = clipguide::bench::median(theirs_rounds);
    std::cout << "training step, " << (cfg.vision.is_resnet() ? "ResNet" : "ViT") << " CLIP at " << s << " px, text "
              << l << " tokens x " << cfg.text.layers << " layers, batch " << batch << ", fp32"
              << (grad_checkpointing ? ", our side with grad checkpointing" : "") << " (CPU, "
              << at::get_num_threads() << " threads; python " << ref["threads"] << " threads, torch "
              << ref["torch"].get<std::string>() << ", open_clip " << ref["open_clip"].get<std::string>() << ")\n"
              << "  clipguide Trainer:     " << ours << " samples/s (median of " << rounds << " rounds)\n";
    if (!no_reference) {
      std::cout << "  open_clip train loop:  " << theirs << " samples/s (median of " << rounds << " rounds)\n"
                << "  ratio:                 " << clipguide::bench::median(ratios) << "x, median of the rounds' ratios (goal >= 1.5)\n";
    }
    std::cout << "  loader (shapes world, 2 threads, " << s << " px): " << loader_per_s
              << " samples/s (not part of either figure)\n";

    if (scaling) {
      if (torchrun.empty()) torchrun = (fs::path(python).parent_path() / "torchrun").string();
      if (clip_train.empty() || !fs::exists(clip_train)) throw std::runtime_error("no clip-train binary: give --clip-train");
      const std::string common =
          " --model " + shell_quote(model) + " --train-data shapes --batch-size " + std::to_string(batch) +
          " --steps " + std::to_string(scaling_steps) + " --warmup 1000 --workers " + std::to_string(workers) +
          " --save-frequency 0 --logs-dir " + shell_quote(dir);
      const std::string env = "OMP_NUM_THREADS=1 ";
      const std::string one = env + shell_quote(clip_train) + common + " --name one";
      const std::string two = env + shell_quote(torchrun) + " --no-python --standalone --nproc-per-node 2 " +
                              shell_quote(clip_train) + common + " --name two";
      for (const auto& name : {"one", "two"}) fs::remove(fs::path(dir) / name / "out.jsonl");
      for (const auto& cmd : {one, two}) {
        if (std::system((cmd + " > " + shell_quote(dir + "/scaling.log") + " 2>&1").c_str()) != 0)
          throw std::runtime_error("failed (see " + dir + "/scaling.log): " + cmd);
      }
      const int64_t skip = 5;
      const double rate1 = logged_samples_per_s(fs::path(dir) / "one" / "out.jsonl", skip);
      const double rate2 = logged_samples_per_s(fs::path(dir) / "two" / "out.jsonl", skip);
      std::cout << "clip-train data parallel on localhost (gloo), batch " << batch << " per process, 1 thread each, "
                << workers << " loader thread(s) each, steps " << skip + 1 << "-" << scaling_steps << "\n"
                << "  1 process:   " << rate1 << " samples/s\n"
                << "  2 processes: " << rate2 << " samples/s (global)\n"
                << "  ratio:       " << rate2 / rate1 << "x (ideal 2.0 on 2 free cores)\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "train_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
