// One run built from its settings, the same way in every program (clip-guide, clip-studio's worker, the
// benches): the device, the CLIP members with their tokenizers, the generator (named by the settings or by
// the weights given, with the files it declared in the registry, created once) and the Guide's and
// GuideLoop's options. What a program does with the run (clip-guide's trials, videos and prompt files; the
// studio's live edits) stays in the program.
#pragma once

#include "app/settings.h"
#include "clipnet/train/distributed.h"
#include "generators/generator.h"
#include "guidance/guide.h"
#include "guidance/guide_loop.h"

#include <c10/core/Device.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clipguide::app {

// Progress lines for a UI ("loading CLIP model x"); may be empty.
using Status = std::function<void(const std::string&)>;

// --cuda_device (generate.py's: that CUDA device, or the CPU with a warning on stderr when there is no
// CUDA), else --device; under torchrun (WORLD_SIZE > 1) "cuda" and "auto" mean this process's GPU,
// cuda:(LOCAL_RANK mod the GPU count).
c10::Device run_device(const RunSettings& settings);

// The generator a run uses: --generator; else "diffusion" (kDiffusion) with --diffusion_model; else the one
// whose own weights setting (GeneratorFiles::weights, e.g. vqgan's --vqgan_checkpoint) is given; else
// "pixel". A diffusion run samples (app/diffusion_run.h) instead of optimising a registry generator.
std::string generator_name(const RunSettings& settings);
constexpr const char* kDiffusion = "diffusion";

// (1, 3, h, w) in [0, 1]: the image at `path` resized (bicubic, antialiased). Unreadable: an Error naming it.
at::Tensor load_image_resized(const std::string& path, int64_t w, int64_t h);

// That generator's options from the settings: size, device, seed, precision, channels_last, checkpoint,
// --generator_option, and its files from the settings it declared (falling back to --generator_weights).
// A generator that requires weights and gets none is a clipguide::Error naming its flag.
generators::GeneratorOptions generator_options(const RunSettings& settings, c10::Device device, uint64_t seed);

// The generator, created once. Its image is the settings' size rounded down to its size_factor() (VQGAN+CLIP's
// rule; a size below one factor is the generator's error); `note` hears "size 45x37 rounded to 44x36 (multiples of 4 for vqgan)".
std::shared_ptr<generators::Generator> make_generator(const RunSettings& settings, c10::Device device, uint64_t seed,
                                                      const Status& note = {});

// The settings holding the files of the generator the settings name (its GeneratorFiles: vqgan's
// vqgan_checkpoint and vqgan_config, others' generator_weights), for a UI's fields; nullptr for a config the
// generator does not take.
// A diffusion run's are --diffusion_model and --diffusion_config.
std::string* generator_weights_setting(RunSettings& settings);
std::string* generator_config_setting(RunSettings& settings);
// What a UI offers as generators: the registry's, then "diffusion".
std::vector<std::string> generator_choices();

// The image size make_generator gives: width, height.
std::pair<int64_t, int64_t> image_size(const RunSettings& settings, const generators::Generator& generator);

// "path[:weight]@device" → {"path[:weight]", device}: a member placed on its own device ("@cuda:1", "@cpu");
// the image goes to it and its loss comes back to the generator's device. Without a device suffix (an '@'
// not followed by a device name stays in the path): no device. A device that is not there is a
// clipguide::Error naming --clip_model.
std::pair<std::string, std::optional<c10::Device>> split_member_device(const std::string& spec);

// The CLIP members: every non-empty --clip_model "path[:weight][@device]", each with its tokenizer: --vocab when
// given, else the model folder's own vocabulary; a weight file without --vocab is a clipguide::Error naming
// --vocab. No --clip_model: the shipped model (clipnet/default_model.h).
std::vector<guidance::GuideMember> load_members(const RunSettings& settings, c10::Device device,
                                                const Status& status = {});

// A batch run's models: load_members() and make_generator() at the same time, on two threads (reading the
// weight files is memory copies out of the page cache, one core each: ViT-B/32 and a VQGAN f16 start in
// 0.5 s less). Errors come as if one ran after the other: load_members' first.
struct RunModels {
  std::vector<guidance::GuideMember> members;
  std::shared_ptr<generators::Generator> generator;
};
RunModels load_models(const RunSettings& settings, c10::Device device, uint64_t seed, const Status& note = {});

// Members kept while the models, the vocabulary and the device stay the same (clip-studio's restarts for a
// new size, seed or generator do not reload CLIP).
class MemberCache {
 public:
  const std::vector<guidance::GuideMember>& get(const RunSettings& settings, c10::Device device,
                                                const Status& status = {});

 private:
  std::string key_;
  std::vector<guidance::GuideMember> members_;
};

// The GuideLoop's sum over processes (GuideLoop::set_sum_over_processes) through `comm`: every number of
// the step's report and every gradient summed over the ranks (two all_reduce calls per step).
guidance::GuideLoop::ProcessSum process_sum(train::Communicator& comm);

// What a written image records besides its settings, so that it can be made again: clipguide's and
// LibTorch's versions and the device it ran on (PNG text chunks clipguide:version, clipguide:torch,
// clipguide:device), with the settings as TOML under clipguide:settings.
std::map<std::string, std::string> image_metadata(const std::string& settings_toml, c10::Device device);
constexpr const char* kSettingsKey = "clipguide:settings";  // the PNG text chunk clip-guide --from-png reads

// The Guide's options from the settings (cutouts, augmentations, regularisers, precision, micro-batches);
// no init image (the program decides what the init_weight anchor is).
guidance::GuideOptions guide_options(const RunSettings& settings, uint64_t seed);

// The prompts of a run: `specs` ('^' separates story phases, each a '|' list of text prompts; --prompts
// when it is the whole run), with --image_prompts and the noise prompts joining every phase. No prompt at
// all is a clipguide::Error.
std::vector<std::vector<guidance::GuidePrompt>> prompt_phases(const RunSettings& settings, const std::string& specs);

// The optimiser's settings.
guidance::LoopSettings loop_settings(const RunSettings& settings);

}  // namespace clipguide::app
