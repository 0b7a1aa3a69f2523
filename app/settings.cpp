// The settings table, its checks and its writers (see settings.h).
// ref: nerdyrodent/VQGAN-CLIP generate.py (the argparse flags, short and long, that the names below accept).
#include "app/settings.h"

#include "app/toml_text.h"

#include "clipnet/text_clean.h"
#include "core/error.h"
#include "core/memory.h"
#include "generators/diffusion/sampler.h"
#include "generators/generator.h"
#include "guidance/cutouts.h"
#include "guidance/guide_loop.h"
#include "guidance/optimizers.h"
#include "guidance/sampler_guidance.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace clipguide::app {
namespace {

using S = RunSettings;

// --generator's help lists the registry, so a new generator needs no line here.
std::string generator_help() {
  std::string names;
  for (const std::string& name : generators::GeneratorRegistry::names()) names += (names.empty() ? "" : ", ") + name;
  return "A generator of the registry (" + names + "; default: vqgan with --vqgan_checkpoint, else pixel), or diffusion: "
         "CLIP-guided sampling from --diffusion_model (the default when it is given)";
}

// The table itself: one row per setting, data rather than logic (hence its length).
std::vector<Setting> make_table() {
  // key, other names, field, help, studio label, values per occurrence, join character.
  return {
      {"prompts", {"-p", "--prompt"}, &S::prompts,
       "Text prompts 'text[:weight[:stop]]|...'; '^' separates story phases. A ':' followed by a non-number stays in "
       "the text ('16:9', URLs); a text ending in ':number' takes it as its weight",
       "Prompts"},
      {"image_prompts", {"-ip"}, &S::image_prompts, "Image prompts 'path[:weight[:stop]]|...'", "Image prompts"},
      {"prompts_file", {}, &S::prompts_file,
       "File with one prompt spec per line: renders output-0.png, output-1.png, ...", ""},
      {"iterations", {"-i"}, &S::iterations, "Optimisation steps", "Iterations"},
      {"trials", {}, &S::trials,
       "Random starts tried for the first --trial_steps steps; the one CLIP scores best goes on (for weak models)",
       "Trials"},
      {"trial_steps", {}, &S::trial_steps, "Steps of each --trials start (counted in --iterations)", "Trial steps"},
      {"size", {"-s"}, &S::size, "Width and height in pixels", "Size", 2},
      {"seed", {"-sd"}, &S::seed, "Random seed (-1: random, printed)", "Seed"},
      {"output", {"-o"}, &S::output, "Output image file", "Output"},
      {"learning_rate", {"-lr", "--lr"}, &S::learning_rate, "Optimiser learning rate", "Learning rate"},
      {"optimiser", {"-opt", "--optimizer"}, &S::optimiser,
       "adam, adamw, sgd, rmsprop, adagrad, adamax, radam, diffgrad or adamp (any case: generate.py's 'AdamW' too)",
       "Optimiser"},
      {"num_cuts", {"-cuts", "--cutn"}, &S::num_cuts, "Cutouts per step", "Cutouts"},
      {"cut_power", {"-cutp", "--cut_pow"}, &S::cut_power, "Cutout size exponent (<1: larger cutouts)", "Cut power"},
      {"cut_min", {}, &S::cut_min, "Smallest cutout side as a fraction of the image (0: the CLIP input size)",
       "Cut min"},
      {"cut_method", {"-cutm"}, &S::cut_method,
       "random, latest or disco; generate.py's original (random), updated and nrupdated (random + augments), "
       "updatedpooling (latest)",
       "Cut method"},
      {"augments", {"-aug"}, &S::augments,
       "Augmentations: names or VQGAN+CLIP's codes, e.g. 'Af,Pe,Ji,Er', '-aug Ji Sh Gn' or 'flip,affine:0.7'; 'none'",
       "Augments", -1, ','},
      {"init_image", {"-ii", "--ii"}, &S::init_image, "Start from this image", "Init image"},
      {"init_noise", {"-in"}, &S::init_noise, "Start from noise: pixels or gradient", "Init noise"},
      {"init_weight", {"-iw"}, &S::init_weight,
       "Stay close to the start (decays); without an init image: the generator's first state", "Init weight"},
      {"tv_weight", {}, &S::tv_weight, "Total-variation smoothness weight", "TV weight"},
      {"save_every", {"-se"}, &S::save_every, "Write the image every N steps (0: only at the end)", "Save every"},
      {"change_prompt_every", {"-cpe"}, &S::change_prompt_every,
       "Story mode: move to the next '^' phase every N steps", "Change prompt every"},
      {"noise_prompt_seeds", {"-nps"}, &S::noise_prompt_seeds,
       "Noise prompts: seeds of random embeddings used as prompts (with --noise_prompt_weights)", "", -1},
      {"noise_prompt_weights", {"-npw"}, &S::noise_prompt_weights, "Weights of the noise prompts, one per seed", "",
       -1},
      {"clip_model", {"-m"}, &S::clip_models,
       "CLIP weights 'path[:weight]' (repeatable: an ensemble); default: the shipped shapes-clip model", "Models"},
      {"vocab", {}, &S::vocab, "BPE vocabulary (bpe_simple_vocab_16e6.txt.gz, vocab.json, tokenizer.json)", "Vocab"},
      {"generator", {}, &S::generator, generator_help(), "Generator"},
      {"vqgan_config", {"-conf"}, &S::vqgan_config, "taming-transformers YAML (optional)", "VQGAN config"},
      {"vqgan_checkpoint", {"-ckpt"}, &S::vqgan_checkpoint, "taming-transformers .ckpt or .safetensors",
       "VQGAN checkpoint"},
      {"generator_weights", {}, &S::generator_weights, "Weights of the chosen generator (torchscript: the module)",
       "Generator weights"},
      {"generator_option", {}, &S::generator_options, "Generator setting key=value (repeatable)", "Generator options"},
      {"diffusion_model", {}, &S::diffusion_model,
       "guided-diffusion weights (256x256_diffusion_uncond.pt, 512x512_diffusion_uncond_finetune_008100.pt): "
       "sample with CLIP guidance instead of optimising a generator", "Diffusion model"},
      {"diffusion_config", {}, &S::diffusion_config,
       "model_config JSON (guided_diffusion's model_and_diffusion_defaults() keys; default: inferred from the weights, "
       "the rest as the 256x256 unconditional model)", "Diffusion config"},
      {"steps", {}, &S::steps, "Diffusion sampling steps", "Steps"},
      {"sampler", {"--diffusion_sampling_mode"}, &S::sampler, "Diffusion sampler: ddim, plms or ddpm", "Sampler"},
      {"eta", {}, &S::eta, "DDIM noise: 0 deterministic, 1 like DDPM", "Eta"},
      {"clip_guidance_scale", {}, &S::clip_guidance_scale, "Diffusion: the CLIP loss's weight", "Guidance scale"},
      {"tv_scale", {}, &S::tv_scale, "Diffusion: total-variation weight", "TV scale"},
      {"range_scale", {}, &S::range_scale, "Diffusion: weight of x0's pixels beyond [-1, 1]", "Range scale"},
      {"sat_scale", {}, &S::sat_scale, "Diffusion: saturation weight", "Saturation scale"},
      {"cut_overview", {}, &S::cut_overview,
       "Diffusion: whole-image cutouts over the run, a 1000-entry schedule such as [12]*400+[4]*600 or a number",
       "Overview cuts"},
      {"cut_innercut", {}, &S::cut_innercut, "Diffusion: inner crops over the run (schedule or number)", "Inner cuts"},
      {"cut_ic_pow", {}, &S::cut_ic_pow, "Diffusion: inner crops' size exponent (schedule or number)", "Inner cut power"},
      {"clamp_max", {}, &S::clamp_max, "Diffusion: the guidance gradient's RMS clamped to this (0: off)", "Clamp max"},
      {"skip_steps", {}, &S::skip_steps, "Diffusion: start this many steps late, from --init_image noised to that level",
       "Skip steps"},
      {"init_scale", {}, &S::init_scale, "Diffusion: weight of the mean squared difference to --init_image", "Init scale"},
      {"mask", {}, &S::mask,
       "Diffusion inpainting: an image, white where the sampler generates and guides, black where --init_image stays",
       "Mask"},
      {"device", {}, &S::device, "cpu, cuda, cuda:N or auto", "Device"},
      {"precision", {}, &S::precision,
       "fp32, or bf16: CLIP and the generator's network under bf16 autocast (weights and loss stay fp32)", ""},
      {"channels_last", {}, &S::channels_last, "The generator's network channels-last (faster CUDA convolutions)",
       ""},
      {"cuda_graphs", {}, &S::cuda_graphs, "Replay CLIP's forward and backward from CUDA graphs (CUDA; no prompt masks)",
       ""},
      {"cutn_batches", {}, &S::cutn_batches, "Cutouts of a step in this many micro-batches: less memory, same gradient",
       ""},
      {"checkpoint", {}, &S::checkpoint,
       "Recompute the generator's network in backward (vqgan): less memory, same gradient", ""},
      {"max_memory", {}, &S::max_memory,
       "Memory budget such as 6G, or auto (CUDA: the card's free memory; CPU: available RAM): --cutn_batches and "
       "--checkpoint are planned to fit it (small probe steps), the plan is printed, and a run that cannot fit "
       "fails before it starts, naming a size that would",
       ""},
      {"deterministic", {"-d"}, &S::deterministic, "Deterministic algorithms", ""},
      {"quiet", {"-q"}, &S::quiet, "No progress output", ""},
      {"video", {"-vid"}, &S::video, "Write a video of the run through ffmpeg: one frame per step", ""},
      {"video_output", {}, &S::video_output, "Video file, .mp4, .mkv or .mov (default: --output with .mp4)", ""},
      {"video_length", {"-vl"}, &S::video_length, "Video length in seconds (fps = frames / length, 10 to 60)", ""},
      {"output_video_fps", {"-ofps"}, &S::output_video_fps,
       "Video frame rate (0: from --video_length); above 9 and above --input_video_fps, frames at that rate are motion-interpolated to it",
       ""},
      {"input_video_fps", {"-ifps"}, &S::input_video_fps,
       "Frame rate of the frames before interpolation to --output_video_fps", ""},
      {"zoom_video", {"-zvid"}, &S::zoom_video,
       "Zoom video: every --zoom_frequency steps zoom/shift the image and restart from it; frames to the video", ""},
      {"zoom_start", {"-zs"}, &S::zoom_start, "Step of the first zoom", ""},
      {"zoom_frequency", {"-zse", "--zoom_save_every"}, &S::zoom_frequency, "Steps between zooms (and zoom-video frames)",
       ""},
      {"zoom_scale", {"-zsc"}, &S::zoom_scale, "Zoom factor per zoom (>1 in, <1 out)", ""},
      {"zoom_shift_x", {"-zsx"}, &S::zoom_shift_x, "Pixels to shift right per zoom (negative: left), wrapping", ""},
      {"zoom_shift_y", {"-zsy"}, &S::zoom_shift_y, "Pixels to shift down per zoom (negative: up), wrapping", ""},
      {"video_style_dir", {"-vsd"}, &S::video_style_dir,
       "Style every .png/.jpg of this folder in turn (each the init image): <output stem>/<frame name>.png", ""},
      {"cuda_device", {"-cd"}, &S::cuda_device,
       "generate.py's device: cuda:N, or the CPU (with a warning) when there is no CUDA", ""},
  };
}

std::string number(double v) {  // the shortest text that reads back as v
  char buf[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".eE") == std::string::npos && std::isfinite(v)) s += ".0";  // stays a float in TOML
  return s;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() &&
      s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
          std::string::npos) {
    return s;
  }
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The value's words as a command line gives them.
std::vector<std::string> words(const RunSettings& s, const SettingField& field) {
  return std::visit(
      [&](auto member) -> std::vector<std::string> {
        const auto& v = s.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) return {v};
        else if constexpr (std::is_same_v<T, bool>) return {};
        else if constexpr (std::is_same_v<T, int64_t>) return {std::to_string(v)};
        else if constexpr (std::is_same_v<T, double>) return {number(v)};
        else {
          std::vector<std::string> out;
          for (const auto& x : v) {
            if constexpr (std::is_same_v<typename T::value_type, std::string>) out.push_back(x);
            else if constexpr (std::is_same_v<typename T::value_type, double>) out.push_back(number(x));
            else out.push_back(std::to_string(x));
          }
          return out;
        }
      },
      field);
}

bool same_value(const RunSettings& a, const RunSettings& b, const SettingField& field) {
  return std::visit([&](auto member) { return a.*member == b.*member; }, field);
}

}  // namespace

const std::vector<Setting>& run_setting_table() {
  static const std::vector<Setting> table = make_table();
  return table;
}

const Setting* find_setting(const std::string& name) {
  std::string bare = name;
  while (!bare.empty() && bare[0] == '-' && bare.size() > 1 && bare.rfind("--", 0) == 0) bare = bare.substr(2);
  std::replace(bare.begin(), bare.end(), '-', '_');
  for (const auto& s : run_setting_table()) {
    if (s.key == bare || s.key == name) return &s;
    for (const auto& n : s.names) {
      std::string n_bare = n.rfind("--", 0) == 0 ? n.substr(2) : n;
      std::replace(n_bare.begin(), n_bare.end(), '-', '_');
      if (n == name || (n.rfind("--", 0) == 0 && n_bare == bare)) return &s;
    }
  }
  return nullptr;
}

void copy_settings(RunSettings& to, const RunSettings& from, const std::vector<std::string>& keys) {
  for (const auto& key : keys) {
    const Setting* row = find_setting(key);
    if (!row) throw Error("copy_settings: no setting '" + key + "'");
    std::visit([&](auto field) { to.*field = from.*field; }, row->field);
  }
}

namespace {
// The diffusion settings (also checked, and ignored, when the run is not a diffusion run: a TOML file mixing
// them stays valid).
void check_diffusion(RunSettings& s) {
  auto fail = [](const std::string& flag, const std::string& what) { throw Error("--" + flag + ": " + what); };
  if (s.steps < 1) fail("steps", "expected >= 1, got " + std::to_string(s.steps));
  if (s.skip_steps < 0 || s.skip_steps >= s.steps)
    fail("skip_steps", "expected 0 <= skip_steps < --steps (" + std::to_string(s.steps) + "), got " + std::to_string(s.skip_steps));
  try {
    generators::diffusion::parse_sampler_kind(s.sampler);
  } catch (const Error& e) {
    fail("sampler", e.what());
  }
  if (!(s.eta >= 0) || !std::isfinite(s.eta)) fail("eta", "expected a finite number >= 0, got " + number(s.eta));
  if (!(s.clamp_max >= 0)) fail("clamp_max", "expected >= 0 (0: off), got " + number(s.clamp_max));
  for (auto [key, value] : {std::pair<const char*, double>{"clip_guidance_scale", s.clip_guidance_scale},
                            {"tv_scale", s.tv_scale}, {"range_scale", s.range_scale}, {"sat_scale", s.sat_scale},
                            {"init_scale", s.init_scale}}) {
    if (!std::isfinite(value)) fail(key, "expected a finite number, got " + number(value));
  }
  for (auto [key, value] : {std::pair<const char*, std::string*>{"cut_overview", &s.cut_overview},
                            {"cut_innercut", &s.cut_innercut}, {"cut_ic_pow", &s.cut_ic_pow}}) {
    guidance::StepSchedule::parse(*value, "--" + std::string(key));  // its error names the flag
  }
  if (!s.mask.empty() && s.init_image.empty()) fail("mask", "needs --init_image (what the black part keeps)");
  if (s.init_scale != 0 && s.init_image.empty()) fail("init_scale", "needs --init_image");
}
}  // namespace

void check(RunSettings& s) {
  auto fail = [](const std::string& flag, const std::string& what) { throw Error("--" + flag + ": " + what); };
  // Text is UTF-8: the settings are written into TOML (a PNG's metadata), which holds nothing else.
  for (const auto& setting : run_setting_table()) {
    const bool text = std::holds_alternative<std::string RunSettings::*>(setting.field) ||
                      std::holds_alternative<std::vector<std::string> RunSettings::*>(setting.field);
    if (!text) continue;
    for (const auto& word : words(s, setting.field)) {
      try {
        clipnet::check_utf8(word);
      } catch (const Error& e) {
        fail(setting.key, std::string("not UTF-8 text: ") + e.what());
      }
    }
  }
  if (s.size.size() != 2 || s.size[0] <= 0 || s.size[1] <= 0) fail("size", "expected WIDTH HEIGHT > 0");
  if (s.iterations < 0) fail("iterations", "expected >= 0, got " + std::to_string(s.iterations));
  if (s.trials < 1) fail("trials", "expected >= 1, got " + std::to_string(s.trials));
  if (s.trial_steps < 0) fail("trial_steps", "expected >= 0, got " + std::to_string(s.trial_steps));
  if (s.num_cuts < 1) fail("num_cuts", "expected >= 1, got " + std::to_string(s.num_cuts));
  if (!(s.cut_power > 0)) fail("cut_power", "expected > 0, got " + number(s.cut_power));
  if (!(s.learning_rate > 0) || !std::isfinite(s.learning_rate)) {
    fail("learning_rate", "expected a finite number > 0, got " + number(s.learning_rate));
  }
  if (s.save_every < 0) fail("save_every", "expected >= 0 (0: only at the end)");
  if (s.cutn_batches < 1) fail("cutn_batches", "expected >= 1, got " + std::to_string(s.cutn_batches));
  if (!s.max_memory.empty() && s.max_memory != "auto") parse_bytes(s.max_memory, "--max_memory");
  if (s.precision != "fp32" && s.precision != "bf16") fail("precision", "expected fp32 or bf16, got '" + s.precision + "'");
  if (!(s.video_length > 0)) fail("video_length", "expected seconds > 0, got " + number(s.video_length));
  if (s.output_video_fps < 0) fail("output_video_fps", "expected >= 0 (0: from --video_length)");
  if (!(s.input_video_fps > 0)) fail("input_video_fps", "expected > 0, got " + number(s.input_video_fps));
  if (s.zoom_frequency < 1) fail("zoom_frequency", "expected steps >= 1, got " + std::to_string(s.zoom_frequency));
  if (!(s.zoom_scale > 0)) fail("zoom_scale", "expected > 0, got " + number(s.zoom_scale));
  if (s.zoom_start < 0) fail("zoom_start", "expected >= 0");
  if (s.noise_prompt_seeds.size() != s.noise_prompt_weights.size()) {
    fail("noise_prompt_weights", "expected one weight per --noise_prompt_seeds seed: got " +
                                     std::to_string(s.noise_prompt_weights.size()) + " weights for " +
                                     std::to_string(s.noise_prompt_seeds.size()) + " seeds");
  }
  {
    std::string name = s.optimiser;
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const auto known = guidance::optimizer_names();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail("optimiser", "expected one of " + list + " (any case), got '" + s.optimiser + "'");
    }
    s.optimiser = name;
  }
  try {
    s.cut_method = guidance::to_string(guidance::parse_cut_method(s.cut_method));
    guidance::parse_augments(s.augments);
  } catch (const Error& e) {
    fail(e.what()[0] == 'c' ? "cut_method" : "augments", e.what());
  }
  check_diffusion(s);
  if (s.trials > 1 && (!s.init_image.empty() || !s.init_noise.empty() || s.zoom_video || !s.video_style_dir.empty())) {
    fail("trials",
         "needs random starts: it cannot be combined with --init_image, --init_noise, --zoom_video or --video_style_dir");
  }
}

std::string toml_value(const RunSettings& s, const Setting& setting) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& v = s.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) return toml_quoted(v);
        else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
        else if constexpr (std::is_same_v<T, int64_t>) return std::to_string(v);
        else if constexpr (std::is_same_v<T, double>) return number(v);
        else {
          // One string as itself (what CLI11 writes for a one-element list); an empty list as "".
          auto items = words(s, setting.field);
          if constexpr (std::is_same_v<typename T::value_type, std::string>) {
            for (auto& item : items) item = toml_quoted(item);
            if (items.empty()) return "\"\"";
            if (items.size() == 1) return items[0];
          }
          std::string out = "[";
          for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
          return out + "]";
        }
      },
      setting.field);
}

std::string to_toml(const RunSettings& s) {
  std::string out;
  for (const auto& setting : run_setting_table()) {
    // An empty list of numbers is its default and has no TOML form CLI11 reads back: left out.
    const bool empty_numbers = std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(s.*member)>;
          if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
            return (s.*member).empty();
          }
          return false;
        },
        setting.field);
    if (!empty_numbers) out += setting.key + "=" + toml_value(s, setting) + "\n";
  }
  return out;
}

std::string to_command_line(const RunSettings& s, const RunSettings& base) {
  std::string out = "clip-guide";
  for (const auto& setting : run_setting_table()) {
    if (same_value(s, base, setting.field)) continue;
    const bool is_flag = std::holds_alternative<bool RunSettings::*>(setting.field);
    if (is_flag) {
      if (s.*std::get<bool RunSettings::*>(setting.field)) out += " --" + setting.key;
      continue;  // a flag cannot be switched off on the command line; the base has it off
    }
    auto items = words(s, setting.field);
    const bool repeat = std::holds_alternative<std::vector<std::string> RunSettings::*>(setting.field);
    if (items.empty()) {
      out += " --" + setting.key + " ''";
      continue;
    }
    if (repeat) {
      for (const auto& item : items) out += " --" + setting.key + " " + shell_quote(item);
    } else {
      out += " --" + setting.key;
      for (const auto& item : items) out += " " + shell_quote(item);
    }
  }
  return out;
}

}  // namespace clipguide::app
