// Image-encode throughput: clipguide's ClipModel against open_clip's (Python) on the same machine,
// same torch, same architecture (ViT-B/32 by default), random weights, no gradients. Prints a ratio.
#include "bench_util.h"
#include "clipnet/clip_model.h"
#include "clipnet/config.h"
#include "core/memory.h"

#include <ATen/Parallel.h>
#include <ATen/ops/randn.h>
#include <CLI/CLI.hpp>
#include <torch/utils.h>

#include <chrono>
#include <iostream>

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  namespace cn = clipguide::clipnet;
  std::string config = "ViT-B-32", reference_model = "ViT-B-32-quickgelu";
  std::string python = "python3";
  int64_t batch = 64, iters = 5, warmup = 1;
  CLI::App app{"encode_bench: image-encode throughput vs open_clip"};
  app.option_defaults()->always_capture_default();
  app.add_option("--config", config, "clipguide builtin config");
  app.add_option("--reference-model", reference_model, "open_clip model name with the same architecture");
  app.add_option("--python", python, "Python with open_clip_torch");
  app.add_option("--batch", batch, "Images per encode call");
  app.add_option("--iters", iters, "Timed calls");
  app.add_option("--warmup", warmup, "Untimed calls first");
  CLI11_PARSE(app, argc, argv);

  torch::manual_seed(0);
  auto cfg = cn::ClipConfig::builtin(config);
  cn::ClipModel model(cfg);
  model->eval();
  torch::NoGradGuard no_grad;
  auto x = at::randn({batch, 3, cfg.vision.image_size, cfg.vision.image_size});
  for (int64_t i = 0; i < warmup; ++i) model->encode_image(x);
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; ++i) model->encode_image(x);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double ours = static_cast<double>(batch * iters) / seconds;

  auto ref = clipguide::bench::run_reference(
      python + " " + CLIPGUIDE_BENCH_DIR "/reference/encode_ref.py --model " + reference_model +
      " --batch " + std::to_string(batch) + " --iters " + std::to_string(iters) + " --warmup " +
      std::to_string(warmup) + " --size " + std::to_string(cfg.vision.image_size));
  double theirs = ref["images_per_s"].get<double>();
  std::cout << "encode " << config << " batch " << batch << " (CPU, " << at::get_num_threads() << " threads; python "
            << ref["threads"] << " threads, torch " << ref["torch"].get<std::string>() << ")\n"
            << "  clipguide: " << ours << " images/s\n"
            << "  open_clip: " << theirs << " images/s\n"
            << "  ratio:     " << ours / theirs << "x (goal >= 1.0)\n";
  return 0;
}
