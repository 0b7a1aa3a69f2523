// Guidance-loop throughput: clipguide's GuideLoop (VQGAN generator + one CLIP member) against the VQGAN+CLIP
// loop written with openai-clip + taming-transformers (bench/reference/guide_ref.py), same random-weight
// files (ViT-B/32 CLIP, VQGAN f16), same settings (256x256, cutn 16, random crops, no augmentation, Adam),
// same machine and torch. Prints iterations/s for both and the ratio.
#include "bench_util.h"
#include "generators/generator.h"
#include "guidance/guide.h"
#include "guidance/guide_loop.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>

int main(int argc, char** argv) {
  namespace gd = clipguide::guidance;
  namespace gen = clipguide::generators;
  std::string python = "python3";
  std::string vocab = CLIPGUIDE_BENCH_DIR "/../../shared/data/openai-clip/bpe_simple_vocab_16e6.txt.gz";
  std::string dir = (std::filesystem::temp_directory_path() / "clipguide-guide-bench").string();
  int64_t size = 256, cutn = 16, iters = 3, warmup = 1;
  std::string prompt = "a painting of a lighthouse at dusk";
  CLI::App app{"guide_bench: guidance-loop it/s vs the VQGAN+CLIP reference loop"};
  app.option_defaults()->always_capture_default();
  app.add_option("--python", python, "Python with openai-clip and taming-transformers-rom1504");
  app.add_option("--vocab", vocab, "OpenAI BPE vocabulary");
  app.add_option("--dir", dir, "Where the random-weight model files are written");
  app.add_option("--size", size, "Image side in pixels");
  app.add_option("--cutn", cutn, "Cutouts per step");
  app.add_option("--iters", iters, "Timed steps");
  app.add_option("--warmup", warmup, "Untimed steps first");
  CLI11_PARSE(app, argc, argv);

  try {
    const std::string ref = python + " " CLIPGUIDE_BENCH_DIR "/reference/guide_ref.py";
    if (!std::filesystem::exists(std::filesystem::path(dir) / "clip.pt")) {
      if (std::system((ref + " --write " + dir).c_str()) != 0) throw std::runtime_error("writing model files failed");
    }
    gen::GeneratorOptions go;
    go.width = go.height = size;
    go.weights = std::filesystem::path(dir) / "vqgan.ckpt";
    go.config = std::filesystem::path(dir) / "vqgan.yaml";
    std::shared_ptr<gen::Generator> generator = gen::GeneratorRegistry::create("vqgan", go);
    generator->init_random(0);
    gd::GuideOptions options;
    options.cutouts.cutn = cutn;
    options.cutouts.method = gd::CutMethod::kRandom;
    options.augments = gd::parse_augments("none");
    options.report = false;
    std::vector<gd::GuideMember> members;
    members.push_back(gd::load_member(std::filesystem::path(dir) / "clip.pt", vocab));
    auto guide = std::make_shared<gd::Guide>(std::move(members), options);
    guide->set_prompts(gd::text_prompts(prompt));
    gd::LoopSettings settings;
    settings.optimizer = "adam";
    settings.learning_rate = 0.1;
    gd::GuideLoop loop(generator, guide, settings);
    for (int64_t i = 0; i < warmup; ++i) loop.step();
    auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) loop.step();
    double ours = iters / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    auto theirs_json = clipguide::bench::run_reference(
        ref + " --run " + dir + " --iters " + std::to_string(iters) + " --warmup " + std::to_string(warmup) +
        " --size " + std::to_string(size) + " --cutn " + std::to_string(cutn));
    double theirs = theirs_json["its_per_s"].get<double>();
    std::cout << "guide loop VQGAN f16 + ViT-B/32, " << size << "x" << size << ", cutn " << cutn << " (CPU, "
              << at::get_num_threads() << " threads; python " << theirs_json["threads"] << " threads, torch "
              << theirs_json["torch"].get<std::string>() << ")\n"
              << "  clipguide:      " << ours << " it/s\n"
              << "  VQGAN+CLIP ref: " << theirs << " it/s\n"
              << "  ratio:          " << ours / theirs << "x (goal >= 2.0 on CPU)\n";
  } catch (const std::exception& e) {
    std::cerr << "guide_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
