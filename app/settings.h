// The run settings of clipguide's applications, in one place: RunSettings (every setting with its default)
// and run_setting_table() (each setting's TOML key, flag names and aliases, help text and GUI label). The
// command-line parser (app/cli.h), the TOML reader and writer, the command-line exporter, clip-guide,
// clip-studio and the benches are all driven by the table, so a new setting is one field plus one row.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace clipguide::app {

// Everything a guided render is made from. Field comments give the meaning; the table gives the names.
struct RunSettings {
  // Prompts.
  std::string prompts;                         // "text[:weight[:stop]]|..."; '^' separates story phases
  std::string image_prompts;                   // "path[:weight[:stop]]|..."
  std::string prompts_file;                    // one prompt spec per line: one image each, in one process
  std::vector<int64_t> noise_prompt_seeds;     // random unit-normal embeddings as prompts (VQGAN+CLIP)
  std::vector<double> noise_prompt_weights;    // their weights, one per seed
  int64_t change_prompt_every = 0;             // story mode: next '^' phase every N steps
  // The run.
  int64_t iterations = 500;                    // optimisation steps
  int64_t trials = 1;                          // > 1: the first trial_steps steps from this many random starts
  int64_t trial_steps = 50;                    // steps of each trial (part of iterations)
  std::vector<int64_t> size{256, 256};         // width height (rounded to the generator's factor)
  int64_t seed = -1;                           // -1: a random seed, printed
  std::string output = "output.png";           // image file (format from the extension)
  int64_t save_every = 50;                     // write the image every N steps (0: only at the end)
  // Optimiser.
  double learning_rate = 0.1;
  std::string optimiser = "adam";              // guidance::optimizer_names(), any case
  // Cutouts and loss.
  int64_t num_cuts = 32;                       // cutouts per step
  double cut_power = 1.0;                      // cutout size exponent
  double cut_min = 0.0;                        // smallest cutout side, fraction of the image (0: model size)
  std::string cut_method = "latest";           // guidance::parse_cut_method's names
  std::string augments = "Af,Pe,Ji,Er";        // guidance::parse_augments' list; "none" for none
  double tv_weight = 0.0;                      // total-variation smoothness
  // Start.
  std::string init_image;                      // start from this image
  std::string init_noise;                      // "pixels" or "gradient": start from noise
  double init_weight = 0.0;                    // keep close to the start (decays over steps)
  std::string video_style_dir;                 // style every .png/.jpg of this folder in turn (init image each)
  // Models.
  std::vector<std::string> clip_models;        // "path[:weight]", several: an ensemble; none: the shipped model
  std::string vocab;                           // BPE vocabulary (default: beside the model)
  // Generator.
  std::string generator;                       // registry name (default: vqgan with a checkpoint, else pixel)
  std::string vqgan_config;                    // taming YAML (optional: inferred from the checkpoint)
  std::string vqgan_checkpoint;                // taming .ckpt or .safetensors
  std::string generator_weights;               // weights of other generators (torchscript module)
  std::vector<std::string> generator_options;  // key=value settings passed to the generator
  // Diffusion (--generator diffusion, or --diffusion_model given), with Disco Diffusion's names.
  std::string diffusion_model;                 // guided-diffusion weights (256x256_diffusion_uncond.pt, ...)
  std::string diffusion_config;                // its model_config JSON (default: inferred from the weights)
  int64_t steps = 250;                         // sampling steps: the respacing "ddimN" (ddim) or "N"
  std::string sampler = "ddim";                // ddim, plms or ddpm
  double eta = 0.8;                            // DDIM's noise (0: deterministic given x_T)
  double clip_guidance_scale = 5000;           // CLIP loss weight
  double tv_scale = 0;                         // Disco's total variation of the blended x0
  double range_scale = 150;                    // pixels of x0 beyond [-1, 1]
  double sat_scale = 0;                        // saturation of the blended x0
  std::string cut_overview = "[12]*400+[4]*600";  // whole-image cutouts over the run (1000-entry schedule or a number)
  std::string cut_innercut = "[4]*400+[12]*600";  // inner crops over the run
  std::string cut_ic_pow = "1";                // inner crops' size exponent (schedule or number)
  double clamp_max = 0.05;                     // the guidance gradient's RMS clamped to this (0: off)
  int64_t skip_steps = 0;                      // start this many steps late, from --init_image noised to that level
  double init_scale = 0;                       // MSE to --init_image
  std::string mask;                            // image: white is generated and guided, black kept from --init_image
  // Device, speed and memory: same results up to rounding.
  std::string device = "auto";                 // cpu, cuda, cuda:N or auto
  std::string cuda_device;                     // VQGAN+CLIP's --cuda_device: that device, or the CPU without CUDA
  std::string precision = "fp32";              // fp32, or bf16 autocast for CLIP and the generator's network
  bool channels_last = false;                  // the generator's network channels-last
  bool cuda_graphs = false;                    // CLIP's encode_image replayed from CUDA graphs
  int64_t cutn_batches = 1;                    // the cutouts of a step in this many micro-batches
  bool checkpoint = false;                     // the generator's network recomputed in backward
  std::string max_memory;                      // "6G" or "auto": cutn_batches and checkpoint planned to fit
  bool deterministic = false;                  // deterministic algorithms
  bool quiet = false;                          // no progress output
  // Video (generate.py's names).
  bool video = false;                          // a video of the run, one frame per step
  std::string video_output;                    // video file (default: --output with .mp4)
  double video_length = 10.0;                  // seconds; fps = frames / length, clamped to 10..60
  double output_video_fps = 0.0;               // frame rate (0: from video_length); with input_video_fps:
                                               // motion-interpolated up to this rate
  double input_video_fps = 15.0;               // rate of the frames before interpolation (output_video_fps > 9)
  bool zoom_video = false;                     // every zoom_frequency steps zoom/shift the image, restart from it
  int64_t zoom_start = 0;
  int64_t zoom_frequency = 10;
  double zoom_scale = 0.99;                    // > 1 zooms in, < 1 out
  int64_t zoom_shift_x = 0;                    // pixels right (negative: left) per zoom, wrapping
  int64_t zoom_shift_y = 0;                    // pixels down (negative: up) per zoom, wrapping
};

// Where a setting lives in RunSettings.
using SettingField =
    std::variant<std::string RunSettings::*, int64_t RunSettings::*, double RunSettings::*, bool RunSettings::*,
                 std::vector<int64_t> RunSettings::*, std::vector<double> RunSettings::*,
                 std::vector<std::string> RunSettings::*>;

// One row of the table.
struct Setting {
  std::string key;                  // TOML key and the canonical long flag (--key; --key-with-dashes too)
  std::vector<std::string> names;   // other flags: "-p", "--prompt", "-ip" (VQGAN+CLIP's multi-letter shorts)
  SettingField field;
  std::string help;                 // --help text
  std::string label;                // the studio's label ("" when the studio does not show it)
  int values = 1;                   // values per occurrence: 1, a fixed count (size: 2), or -1 (any number)
  char join = 0;                    // lists written as one string: every value of every occurrence joined
                                    // with this (augments: "-aug Ji Sh -aug Gn" → "Ji,Sh,Gn")
};

// Every setting, in the order TOML files list them.
const std::vector<Setting>& run_setting_table();
// The row whose key or any name is `name` ("--cutn", "cutn", "-cuts"); nullptr when none.
const Setting* find_setting(const std::string& name);

// Copies the settings named by `keys` (table keys) from `from` to `to`; an unknown key is a clipguide::Error.
void copy_settings(RunSettings& to, const RunSettings& from, const std::vector<std::string>& keys);
// Checks values and brings the ones with several spellings to one (optimiser names in any case, cut-method
// aliases, --cuda_device): a clipguide::Error naming the flag and what it expected.
void check(RunSettings& settings);

// The settings as TOML: every key of the table (but empty number lists), in table order (what clip-guide stores in its PNGs and
// reads with --config / --from-png).
std::string to_toml(const RunSettings& settings);
// The settings that differ from `base` as a clip-guide command line, shell-quoted ("clip-guide --key value").
std::string to_command_line(const RunSettings& settings, const RunSettings& base = {});

// The text of one setting's value as TOML writes it (strings quoted, lists in brackets).
std::string toml_value(const RunSettings& settings, const Setting& setting);

}  // namespace clipguide::app
