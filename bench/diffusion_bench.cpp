// diffusion_bench: CLIP-guided DDIM steps per second, clipguide (app::DiffusionRender, the path clip-guide
// --generator diffusion takes) against Disco Diffusion's loop in Python (bench/reference/diffusion_ref.py:
// guided_diffusion + openai-clip), side by side on this machine with the same random-weight files: the
// 256x256 uncond architecture (channels reduced for the CPU, both sides), ViT-B/32, 256x256, 8 overview + 8
// inner cutouts, eta 0.8. Prints both timings and the ratio (--rounds N: N alternating rounds and the median).
#include "app/diffusion_run.h"
#include "app/session.h"
#include "bench_util.h"
#include "core/device.h"
#include "core/memory.h"
#include "step_profile.h"

#include <CLI/CLI.hpp>
#include <torch/cuda.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>

namespace cg = clipguide;

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  std::string python = "python3";
  std::string vocab = CLIPGUIDE_BENCH_DIR "/../tests/data/openai-clip/bpe_simple_vocab_16e6.txt.gz";
  std::string dir = (std::filesystem::temp_directory_path() / "clipguide-diffusion-bench").string();
  std::string device_name = "cpu";
  int64_t size = 256, channels = 64, overview = 8, innercut = 8, steps = 3, warmup = 1, total_steps = 50, rounds = 1;
  bool bf16 = false, no_reference = false, checkpoint = false, channels_last = false;
  bool profile_shapes = false;
  int64_t profile_steps = 0;
  CLI::App app{"diffusion_bench: CLIP-guided DDIM s/step vs Disco Diffusion's loop"};
  app.option_defaults()->always_capture_default();
  app.add_option("--python", python, "Python with guided-diffusion-sdk and openai-clip");
  app.add_option("--vocab", vocab, "OpenAI BPE vocabulary");
  app.add_option("--dir", dir, "Where the random-weight files are written");
  app.add_option("--size", size, "Image side in pixels");
  app.add_option("--channels", channels, "UNet num_channels (the released models: 256)");
  app.add_option("--overview", overview, "Whole-image cutouts per step");
  app.add_option("--innercut", innercut, "Inner crops per step");
  app.add_option("--steps", steps, "Timed steps");
  app.add_option("--warmup", warmup, "Untimed steps first");
  app.add_option("--rounds", rounds, "Measure both sides this many times, alternating; prints the median ratio")
      ->check(CLI::PositiveNumber);
  app.add_option("--total-steps", total_steps, "The DDIM respacing (ddimN)");
  app.add_option("--device", device_name, "cpu, cuda or auto (both sides)");
  app.add_flag("--bf16", bf16, "clipguide: bf16 autocast for CLIP; the reference: guided_diffusion's fp16 torso");
  app.add_flag("--channels-last", channels_last, "clipguide: UNet weights and activations channels-last (NHWC)");
  app.add_flag("--checkpoint", checkpoint, "clipguide: UNet activations recomputed in backward (less memory)");
  app.add_flag("--no-reference", no_reference, "Time clipguide only (no Python)");
  app.add_option("--profile", profile_steps, "After the warm-up, profile this many steps and print where their time went");
  app.add_flag("--profile-shapes", profile_shapes, "--profile: a row per operator and input shapes");
  CLI11_PARSE(app, argc, argv);
  try {
    const c10::Device device = cg::parse_device(device_name);
    const std::string ref = python + " " CLIPGUIDE_BENCH_DIR "/reference/diffusion_ref.py";
    const auto unet = std::filesystem::path(dir) / "unet.pt";
    if (!std::filesystem::exists(unet) || !std::filesystem::exists(std::filesystem::path(dir) / "clip.pt")) {
      const auto write = ref + " --write " + dir + " --channels " + std::to_string(channels);
      if (std::system(write.c_str()) != 0) throw std::runtime_error("writing model files failed: " + write);
    }
    cg::app::RunSettings s;
    s.clip_models = {(std::filesystem::path(dir) / "clip.pt").string()};
    s.vocab = vocab;
    s.diffusion_model = unet.string();
    s.diffusion_config = (std::filesystem::path(dir) / "unet.json").string();
    s.size = {size, size};
    s.steps = total_steps;
    s.eta = 0.8;
    s.cut_overview = std::to_string(overview);
    s.cut_innercut = std::to_string(innercut);
    s.cutn_batches = 1;
    s.augments = "Hf,Af,Gn,Ji";  // Disco's: flip, affine, noise, jitter (grey views are cutouts' own)
    s.precision = bf16 ? "bf16" : "fp32";
    s.checkpoint = checkpoint;
    s.channels_last = channels_last;
    s.prompts = "a lighthouse at dusk";
    cg::app::check(s);
    auto members = cg::app::load_members(s, device);
    auto model = cg::app::load_diffusion(s, device);
    cg::MemoryMeter meter(device);
    // One round: a fresh run from the same seed, `warmup` steps, then the median of `steps` timed ones.
    auto time_ours = [&] {
      cg::app::DiffusionRender render(s, model, members, device, 0);
      render.set_prompts(cg::app::prompt_phases(s, s.prompts)[0]);
      for (int64_t i = 0; i < warmup && !render.done(); ++i) render.step();
      if (profile_steps > 0) {  // untimed steps, their ops recorded and summed up
        cg::bench::StepProfile profile(device.is_cuda(), profile_shapes);
        for (int64_t i = 0; i < profile_steps && !render.done(); ++i) render.step();
        profile.finish(profile_steps, "", 40);
        profile_steps = 0;  // the first round only
      }
      std::vector<double> times;
      for (int64_t i = 0; i < steps && !render.done(); ++i) {
        const auto start = std::chrono::steady_clock::now();
        render.step();
        if (device.is_cuda()) torch::cuda::synchronize();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      return cg::bench::median(times);
    };
    const std::string ref_run = ref + " --run " + dir + " --size " + std::to_string(size) + " --overview " +
                                std::to_string(overview) + " --innercut " + std::to_string(innercut) + " --steps " +
                                std::to_string(steps) + " --warmup " + std::to_string(warmup) + " --total_steps " +
                                std::to_string(total_steps) + " --device " + device.str() + (bf16 ? " --bf16" : "");
    const std::string what = "  [" + std::to_string(size) + "x" + std::to_string(size) + ", " + std::to_string(channels) +
                             " channels, " + std::to_string(overview) + "+" + std::to_string(innercut) + " cutouts, " +
                             device.str() + (bf16 ? ", bf16" : "") + (channels_last ? ", channels-last" : "") +
                             (checkpoint ? ", checkpoint" : "") + "]";
    // Rounds alternate the two sides, so that a slower spell of a shared machine falls on both.
    std::vector<double> ours_all, ratios;
    double theirs_peak = 0;
    std::cout << std::fixed;
    for (int64_t round = 0; round < rounds; ++round) {
      const double ours = time_ours();
      ours_all.push_back(ours);
      const double peak_mib = static_cast<double>(device.is_cpu() ? cg::peak_resident_bytes() : meter.peak()) / (1 << 20);
      std::cout << std::setprecision(3) << "clipguide: " << ours << " s/step (" << 1 / ours << " it/s), peak "
                << std::setprecision(0) << peak_mib << " MiB" << (device.is_cpu() ? " resident" : "") << what << "\n";
      if (no_reference) continue;
      const auto theirs_json = cg::bench::run_reference(ref_run);
      const double theirs = theirs_json["s_per_step"].get<double>();
      theirs_peak = theirs_json.contains("peak_mib") ? theirs_json["peak_mib"].get<double>()
                                                     : theirs_json["peak_rss_mib"].get<double>();
      ratios.push_back(theirs / ours);
      std::cout << std::setprecision(3) << "reference (guided_diffusion + openai-clip, Disco's cond_fn): " << theirs
                << " s/step, peak " << std::setprecision(0) << theirs_peak << " MiB\n"
                << std::setprecision(2) << "speed-up: " << theirs / ours << "x\n"
                << std::flush;
    }
    if (rounds > 1) {
      std::cout << std::setprecision(3) << "median over " << rounds << " rounds: clipguide " << cg::bench::median(ours_all)
                << " s/step";
      if (!ratios.empty()) {
        std::cout << std::setprecision(2) << ", speed-up " << cg::bench::median(ratios) << "x (rounds:";
        for (double r : ratios) std::cout << " " << r;
        std::cout << ")";
      }
      std::cout << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "diffusion_bench: " << cg::error_text(e) << "\n";
    return 1;
  }
  return 0;
}
