// Guidance-loop throughput: clipguide's GuideLoop (VQGAN generator + one CLIP member) against the VQGAN+CLIP
// loop written with openai-clip + taming-transformers (bench/reference/guide_ref.py), same random-weight
// files (ViT-B/32 CLIP, VQGAN f16), same settings (default 256x256, cutn 16, random crops, no augmentation,
// Adam), same machine and torch. Prints iterations/s for both and the ratio; on CUDA also peak memory.
// Speed options (both sides alike): --bf16 (autocast for the CLIP forward and the VQGAN decoder),
// --channels-last (VQGAN weights and activations NHWC); clipguide alone: --cuda-graphs (CLIP's forward and
// backward replayed from CUDA graphs). --no-reference times clipguide alone, --json writes
// the figures (bench/gpu/run_gpu_bench.sh drives it that way), --random-weights needs no Python at all,
// --trace FILE records one step's operators. On CPU the reference also counts a step's FLOPs, and the bench
// prints the arithmetic floor: no fp32 loop of the reference's convolutions and GEMMs beats FLOPs / matmul
// rate.
#include "app/session.h"
#include "bench_util.h"
#include "clipnet/checkpoint.h"
#include "core/autocast.h"
#include "core/device.h"
#include "core/error.h"
#include "core/memory.h"
#include "generators/generator.h"
#include "generators/vqgan/vqgan_generator.h"
#include "guidance/guide.h"
#include "guidance/guide_loop.h"
#include "step_profile.h"

#include <ATen/Parallel.h>
#include <ATen/ops/rand.h>
#include <CLI/CLI.hpp>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <torch/version.h>

#if CLIPGUIDE_BENCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif


#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace {

namespace cg = clipguide;
namespace gd = clipguide::guidance;
namespace gen = clipguide::generators;
namespace cn = clipguide::clipnet;

// Peak bytes the CUDA caching allocator handed out (torch.cuda.max_memory_allocated) and reserved
// (max_memory_reserved) since the last reset; -1 where there is no CUDA build or device.
struct CudaPeak {
  double allocated_mb = -1, reserved_mb = -1;
};

void reset_cuda_peak(const c10::Device& device) {
#if CLIPGUIDE_BENCH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
}

CudaPeak cuda_peak(const c10::Device& device) {
  CudaPeak peak;
#if CLIPGUIDE_BENCH_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    // Index 0 is StatType::AGGREGATE (all pool sizes), in every LibTorch since 1.x.
    peak.allocated_mb = static_cast<double>(stats.allocated_bytes[0].peak) / (1 << 20);
    peak.reserved_mb = static_cast<double>(stats.reserved_bytes[0].peak) / (1 << 20);
  }
#endif
  return peak;
}

double peak_rss_mb() { return static_cast<double>(clipguide::peak_resident_bytes()) / (1 << 20); }

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// VQGAN f16 as guide_ref.py writes it (imagenet_f16_16384's architecture, 1024 codes), random weights.
gen::vqgan::VQModel random_vqgan(const c10::Device& device) {
  gen::vqgan::VqganConfig config;
  config.n_embed = 1024;
  config.embed_dim = 256;
  gen::vqgan::set_attention_from_resolutions(config, 256, {16});
  gen::vqgan::VQModel model(config);
  model->to(device);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  std::string python = "python3";
  std::string vocab = CLIPGUIDE_BENCH_DIR "/../tests/data/openai-clip/bpe_simple_vocab_16e6.txt.gz";
  std::string dir = (std::filesystem::temp_directory_path() / "clipguide-guide-bench").string();
  std::string device_name = "cpu", json_path, label = "clipguide";
  int64_t size = 256, cutn = 16, iters = 3, warmup = 1;
  bool bf16 = false, channels_last = false, cuda_graphs = false, no_reference = false, random_weights = false;
  std::string trace_path;
  bool profile_shapes = false;
  int64_t profile_steps = 0, cutn_batches = 1;
  bool checkpoint = false;
  std::string prompt = "a painting of a lighthouse at dusk";
  CLI::App app{"guide_bench: guidance-loop it/s vs the VQGAN+CLIP reference loop"};
  app.option_defaults()->always_capture_default();
  app.add_option("--python", python, "Python with openai-clip and taming-transformers-rom1504");
  app.add_option("--vocab", vocab, "OpenAI BPE vocabulary (absent: an image prompt instead of the text)");
  app.add_option("--dir", dir, "Where the random-weight model files are written");
  app.add_option("--size", size, "Image side in pixels");
  app.add_option("--cutn", cutn, "Cutouts per step");
  app.add_option("--iters", iters, "Timed steps");
  app.add_option("--warmup", warmup, "Untimed steps first");
  app.add_option("--device", device_name, "cpu, cuda or auto (both sides)");
  app.add_flag("--bf16", bf16, "bf16 autocast for the CLIP forward and the VQGAN decoder (both sides)");
  app.add_flag("--channels-last", channels_last, "VQGAN weights and activations channels-last (both sides)");
  app.add_flag("--cuda-graphs", cuda_graphs,
               "CLIP forward+backward replayed from CUDA graphs (clipguide only: the reference has no such mode)");
  app.add_option("--cutn-batches", cutn_batches, "clipguide: the cutouts in this many micro-batches (less memory)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--checkpoint", checkpoint, "clipguide: VQGAN decoder activations recomputed in backward (less memory)");
  app.add_flag("--no-reference", no_reference, "Time clipguide only (no Python)");
  app.add_flag("--random-weights", random_weights,
               "Random in-memory models instead of guide_ref.py's files (implies --no-reference)");
  app.add_option("--json", json_path, "Also write the figures as JSON to this file");
  app.add_option("--label", label, "Name of this run in the JSON");
  app.add_option("--trace", trace_path, "Record one extra step's operators (and CUDA kernels) as a Chrome trace to this file");
  app.add_option("--profile", profile_steps, "Before the timed steps, profile this many steps and print where their time went");
  app.add_flag("--profile-shapes", profile_shapes, "--profile: a row per operator and input shapes");
  CLI11_PARSE(app, argc, argv);
  if (random_weights) no_reference = true;

  try {
    const c10::Device device = clipguide::parse_device(device_name);
    const at::ScalarType autocast = bf16 ? at::kBFloat16 : at::kFloat;
    const std::string ref = python + " " CLIPGUIDE_BENCH_DIR "/reference/guide_ref.py";
    const bool have_vocab = std::filesystem::exists(vocab);
    if (!random_weights && !std::filesystem::exists(std::filesystem::path(dir) / "clip.pt")) {
      if (std::system((ref + " --write " + dir).c_str()) != 0) throw std::runtime_error("writing model files failed");
    }

    // Generator and CLIP member: guide_ref.py's files, or the same architectures with random weights.
    gen::GeneratorOptions go;
    go.width = go.height = size;
    go.device = device;
    go.autocast = autocast;
    go.channels_last = channels_last;
    go.checkpoint = checkpoint;
    std::shared_ptr<gen::Generator> generator;
    gd::GuideMember member;
    if (random_weights) {
      torch::manual_seed(0);
      generator = std::make_shared<gen::vqgan::VqganGenerator>(random_vqgan(device), go);
      member.config = cn::ClipConfig::builtin("ViT-B-32");
      member.model = cn::ClipModel(member.config);
      member.model->to(device);
      member.model->eval();
      for (auto& p : member.model->parameters()) p.set_requires_grad(false);
      member.name = "ViT-B-32 (random)";
    } else {
      // guide_ref.py's files, built as clip-guide builds a run (app/session.h).
      cg::app::RunSettings run;
      run.size = {size, size};
      run.precision = bf16 ? "bf16" : "fp32";
      run.channels_last = channels_last;
      run.checkpoint = checkpoint;
      run.vqgan_checkpoint = (std::filesystem::path(dir) / "vqgan.ckpt").string();
      run.vqgan_config = (std::filesystem::path(dir) / "vqgan.yaml").string();
      run.clip_models = {(std::filesystem::path(dir) / "clip.pt").string()};
      run.vocab = have_vocab ? vocab : "";
      generator = cg::app::make_generator(run, device, 0);
      if (have_vocab) {
        member = cg::app::load_members(run, device).at(0);
      } else {  // the member alone: the loop's cost does not depend on the prompt
        cn::ClipLoadOptions clip_options;
        clip_options.device = device;
        auto loaded = cn::load_clip(run.clip_models[0], clip_options);
        member.model = loaded.model;
        member.config = loaded.config;
      }
      member.name = "clip.pt";
    }
    if (random_weights && have_vocab) member.tokenizer = cn::Tokenizer::from_file(vocab);

    gd::GuideOptions options;
    options.cutouts.cutn = cutn;
    options.cutouts.method = gd::CutMethod::kRandom;
    options.augments = gd::parse_augments("none");
    options.report = false;
    options.autocast = autocast;
    options.cuda_graphs = cuda_graphs;
    options.cutn_batches = cutn_batches;
    std::vector<gd::GuideMember> members;
    members.push_back(std::move(member));
    auto guide = std::make_shared<gd::Guide>(std::move(members), options);
    if (have_vocab) {
      guide->set_prompts(gd::text_prompts(prompt));
    } else {
      torch::manual_seed(1);  // the loop's cost does not depend on what the one prompt embedding is
      guide->set_prompts({gd::GuidePrompt::from_image(at::rand({3, 224, 224}))});
    }
    gd::LoopSettings settings;
    settings.optimizer = "adam";
    settings.learning_rate = 0.1;
    gd::GuideLoop loop(generator, guide, settings);

    synchronize(device);
    reset_cuda_peak(device);  // the models stay counted: peak = weights + the step's activations
    double first_loss = 0.0;  // step 0's loss: the same with and without CUDA graphs (a check of the capture)
    for (int64_t i = 0; i < warmup; ++i) {
      const double l = loop.step().total;
      if (i == 0) first_loss = l;
    }
    synchronize(device);
    auto start = std::chrono::steady_clock::now();
    double loss = 0.0;
    if (!trace_path.empty() || profile_steps > 0) {  // untimed steps, their ops recorded and summed up
      clipguide::bench::StepProfile profile(device.is_cuda(), profile_shapes);
      const int64_t steps = std::max<int64_t>(profile_steps, 1);
      for (int64_t i = 0; i < steps; ++i) loop.step();
      synchronize(device);
      profile.finish(steps, trace_path);
    }
    for (int64_t i = 0; i < iters; ++i) loss = loop.step().total;  // the report reads the loss back: one sync a step
    synchronize(device);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double ours = iters / seconds;
    const CudaPeak peak = cuda_peak(device);

    nlohmann::json result = {{"label", label},
                             {"impl", "clipguide"},
                             {"device", device.str()},
                             {"size", size},
                             {"cutn", cutn},
                             {"iters", iters},
                             {"warmup", warmup},
                             {"bf16", bf16},
                             {"channels_last", channels_last},
                             {"cuda_graphs", cuda_graphs && device.is_cuda()},
                             {"cutn_batches", cutn_batches},
                             {"checkpoint", checkpoint},
                             {"weights", random_weights ? "random in-memory" : "guide_ref.py files"},
                             {"prompt", have_vocab ? "text" : "image"},
                             {"its_per_s", ours},
                             {"ms_per_it", 1000.0 / ours},
                             {"first_loss", warmup > 0 ? nlohmann::json(first_loss) : nlohmann::json()},
                             {"last_loss", loss},
                             {"peak_cuda_allocated_mb", peak.allocated_mb >= 0 ? nlohmann::json(peak.allocated_mb) : nlohmann::json()},
                             {"peak_cuda_reserved_mb", peak.reserved_mb >= 0 ? nlohmann::json(peak.reserved_mb) : nlohmann::json()},
                             {"peak_rss_mb", peak_rss_mb()},
                             {"threads", at::get_num_threads()},
                             {"torch", TORCH_VERSION}};
    std::string where = device.is_cuda() ? "CUDA" : "CPU, " + std::to_string(at::get_num_threads()) + " threads";
    std::string variant = std::string(bf16 ? "bf16 autocast" : "fp32") + (channels_last ? " + channels_last" : "") +
                          (cuda_graphs && device.is_cuda() ? " + CUDA graphs" : "") +
                          (cutn_batches > 1 ? " + " + std::to_string(cutn_batches) + " cutout micro-batches" : "") +
                          (checkpoint ? " + decoder checkpointing" : "");
    std::cout << "guide loop VQGAN f16 + ViT-B/32, " << size << "x" << size << ", cutn " << cutn << " (" << where
              << ", " << variant << ")\n"
              << "  clipguide:      " << ours << " it/s";
    if (peak.allocated_mb >= 0) std::cout << ", peak CUDA memory " << peak.allocated_mb << " MiB";
    std::cout << "\n";
    if (!no_reference) {
      std::string flags = " --device " + std::string(device.is_cuda() ? "cuda" : "cpu") + (bf16 ? " --bf16" : "") +
                          (channels_last ? " --channels-last" : "");
      auto theirs_json = clipguide::bench::run_reference(
          ref + " --run " + dir + " --iters " + std::to_string(iters) + " --warmup " + std::to_string(warmup) +
          " --size " + std::to_string(size) + " --cutn " + std::to_string(cutn) + flags);
      double theirs = theirs_json["its_per_s"].get<double>();
      result["reference"] = theirs_json;
      result["ratio"] = ours / theirs;
      std::cout << "  VQGAN+CLIP ref: " << theirs << " it/s";
      if (!theirs_json["peak_cuda_allocated_mb"].is_null()) {
        std::cout << ", peak CUDA memory " << theirs_json["peak_cuda_allocated_mb"].get<double>() << " MiB";
      }
      std::cout << " (python " << theirs_json["threads"] << " threads, torch " << theirs_json["torch"].get<std::string>()
                << ")\n"
                << "  ratio:          " << ours / theirs << "x" << (device.is_cuda() ? "" : " (goal >= 2.0 on CPU)") << "\n";
      if (!theirs_json["step_gflop"].is_null()) {
        // Roofline: the reference's counted FLOPs at the machine's fp32 matmul rate bound every loop that does
        // the reference's arithmetic with direct convolutions and GEMMs, and with it the ratio. (clipguide skips
        // only the rows of the ViT's last block that no output reads, about 2% of a step.)
        const double gflop = theirs_json["step_gflop"].get<double>();
        const double peak_rate = theirs_json["sgemm_gflops"].get<double>();
        const double floor_s = gflop / peak_rate;
        result["floor_s_per_it"] = floor_s;
        result["best_attainable_ratio"] = floor_s > 0 ? (1.0 / theirs) / floor_s : 0.0;
        std::cout << "  arithmetic:     " << gflop << " GFLOP a step (torch FlopCounterMode), fp32 matmul "
                  << peak_rate << " GFLOP/s -> at best " << floor_s << " s/it\n"
                  << "                  reference at " << 100.0 * floor_s * theirs << "% of that floor, clipguide at "
                  << 100.0 * floor_s * ours << "%; best attainable ratio "
                  << result["best_attainable_ratio"].get<double>() << "x\n";
      }
    }
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << result.dump(2) << "\n";
      if (!out) throw std::runtime_error("cannot write " + json_path);
    }
  } catch (const std::exception& e) {
    std::cerr << "guide_bench: " << clipguide::error_text(e) << "\n";
    return 1;
  }
  return 0;
}
