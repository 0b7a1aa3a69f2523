// Building a run from its settings (see session.h).
#include "app/session.h"

#include "clipnet/default_model.h"
#include "core/device.h"
#include "core/error.h"
#include "core/image_io.h"
#include "guidance/cutouts.h"
#include "guidance/prompt.h"

#include <ATen/Context.h>
#include <ATen/ops/from_blob.h>
#include <torch/cuda.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/version.h>

#include <filesystem>
#include <future>
#include <regex>
#include <iostream>

namespace clipguide::app {

namespace {

// The text setting `key` of the table ("vqgan_checkpoint"); "" for an empty key. A key that is not a text
// setting is a programming error in a generator's registration: said loudly.
std::string RunSettings::*text_field(const std::string& key) {
  const Setting* row = find_setting(key);
  const auto* field = row ? std::get_if<std::string RunSettings::*>(&row->field) : nullptr;
  if (!field) throw Error("generator registration names '" + key + "', which is not a text setting of app/settings.h");
  return *field;
}

const std::string& text_setting(const RunSettings& settings, const std::string& key) {
  static const std::string none;
  return key.empty() ? none : settings.*text_field(key);
}

at::ScalarType autocast_type(const RunSettings& s) { return s.precision == "bf16" ? at::kBFloat16 : at::kFloat; }

}  // namespace

c10::Device run_device(const RunSettings& s) {
  if (s.cuda_device.empty()) {
    const c10::Device device = clipguide::parse_device(s.device);
    // torchrun's processes on one machine take one GPU each, unless --device names one.
    const auto env = train::DistributedEnv::from_environment();
    if (device.is_cuda() && s.device.find(':') == std::string::npos && env.world_size > 1) {
      return {c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank % torch::cuda::device_count())};
    }
    return device;
  }
  if (s.cuda_device != "cpu" && !at::globalContext().hasCUDA()) {
    std::cerr << "warning: no CUDA device: --cuda_device " << s.cuda_device << " falls back to the CPU\n";
    return c10::kCPU;
  }
  return clipguide::parse_device(s.cuda_device, "--cuda_device");
}

std::string generator_name(const RunSettings& s) {
  if (!s.generator.empty()) return s.generator;
  if (!s.diffusion_model.empty()) return kDiffusion;
  for (const auto& name : generators::GeneratorRegistry::names()) {
    const auto& own = generators::GeneratorRegistry::files(name).weights;
    if (own != generators::GeneratorFiles{}.weights && !text_setting(s, own).empty()) return name;
  }
  return "pixel";
}

at::Tensor load_image_resized(const std::string& path, int64_t w, int64_t h) {
  namespace F = torch::nn::functional;
  auto image = clipguide::read_image(path).unsqueeze(0).to(at::kFloat).div(255);  // (1, 3, H', W')
  return F::interpolate(image, F::InterpolateFuncOptions()
                                   .size(std::vector<int64_t>{h, w})
                                   .mode(torch::kBicubic)
                                   .align_corners(false)
                                   .antialias(true))
      .clamp(0, 1);
}

generators::GeneratorOptions generator_options(const RunSettings& s, c10::Device device, uint64_t seed) {
  const std::string name = generator_name(s);
  const auto& files = generators::GeneratorRegistry::files(name);
  generators::GeneratorOptions go;
  go.width = s.size.at(0);
  go.height = s.size.at(1);
  go.device = device;
  go.seed = seed;
  go.autocast = autocast_type(s);
  go.channels_last = s.channels_last;
  go.checkpoint = s.checkpoint;
  go.weights = text_setting(s, files.weights);
  if (go.weights.empty()) go.weights = s.generator_weights;
  go.config = text_setting(s, files.config);
  if (files.weights_required && go.weights.empty()) {
    throw Error("--generator " + name + " needs --" + files.weights);
  }
  go.extra = generators::parse_extra(s.generator_options, "--generator_option");
  return go;
}

std::shared_ptr<generators::Generator> make_generator(const RunSettings& s, c10::Device device, uint64_t seed,
                                                      const Status& note) {
  const std::string name = generator_name(s);
  if (name == kDiffusion) {
    throw Error("--generator diffusion samples instead of optimising a generator: clip-guide runs it "
                "(app/diffusion_run.h); this program does not yet");
  }
  std::shared_ptr<generators::Generator> generator =
      generators::GeneratorRegistry::create(name, generator_options(s, device, seed));
  const auto [w, h] = image_size(s, *generator);
  if (note && (w != s.size[0] || h != s.size[1])) {
    note("size " + std::to_string(s.size[0]) + "x" + std::to_string(s.size[1]) + " rounded to " + std::to_string(w) +
         "x" + std::to_string(h) + " (multiples of " + std::to_string(generator->size_factor()) + " for " + name + ")");
  }
  return generator;
}

std::string* generator_weights_setting(RunSettings& s) {
  if (generator_name(s) == kDiffusion) return &s.diffusion_model;
  return &(s.*text_field(generators::GeneratorRegistry::files(generator_name(s)).weights));
}

std::string* generator_config_setting(RunSettings& s) {
  if (generator_name(s) == kDiffusion) return &s.diffusion_config;
  const auto& key = generators::GeneratorRegistry::files(generator_name(s)).config;
  return key.empty() ? nullptr : &(s.*text_field(key));
}

std::vector<std::string> generator_choices() {
  auto names = generators::GeneratorRegistry::names();
  names.push_back(kDiffusion);
  return names;
}

std::pair<int64_t, int64_t> image_size(const RunSettings& s, const generators::Generator& generator) {
  const int64_t f = generator.size_factor();
  return {s.size.at(0) / f * f, s.size.at(1) / f * f};
}

std::pair<std::string, std::optional<c10::Device>> split_member_device(const std::string& spec) {
  const size_t at = spec.rfind('@');
  if (at == std::string::npos) return {spec, std::nullopt};
  const std::string tail = spec.substr(at + 1);
  static const std::regex device_name(R"((cpu|cuda|auto)(:\d+)?)");
  if (!std::regex_match(tail, device_name)) return {spec, std::nullopt};  // an '@' of the path itself
  return {spec.substr(0, at), clipguide::parse_device(tail, "--clip_model '" + spec + "'")};
}

std::vector<guidance::GuideMember> load_members(const RunSettings& s, c10::Device device, const Status& status) {
  std::vector<std::string> specs;
  for (const auto& spec : s.clip_models) {
    if (!spec.empty()) specs.push_back(spec);
  }
  if (specs.empty()) specs.push_back(clipnet::default_model_path().string());  // the shipped model
  std::vector<guidance::GuideMember> members;
  for (const auto& full_spec : specs) {
    const auto [spec, member_device] = split_member_device(full_spec);
    auto [path, weight] = guidance::split_member_spec(spec);
    if (s.vocab.empty() && !std::filesystem::is_directory(path)) {
      throw Error("--vocab is required for '" + path + "' (OpenAI's bpe_simple_vocab_16e6.txt.gz or a vocab.json)");
    }
    if (status) status("loading CLIP model " + path + (member_device ? " on " + member_device->str() : ""));
    clipnet::ClipLoadOptions load;
    load.device = member_device.value_or(device);
    members.push_back(guidance::load_member(path, s.vocab.empty() ? path : s.vocab, weight, load));
  }
  return members;
}

RunModels load_models(const RunSettings& s, c10::Device device, uint64_t seed, const Status& note) {
  auto members = std::async(std::launch::async, [&] { return load_members(s, device); });
  RunModels models;
  std::exception_ptr generator_error;
  try {
    models.generator = make_generator(s, device, seed, note);
  } catch (...) {
    generator_error = std::current_exception();
  }
  models.members = members.get();  // its error first, as in a sequential start
  if (generator_error) std::rethrow_exception(generator_error);
  return models;
}

const std::vector<guidance::GuideMember>& MemberCache::get(const RunSettings& s, c10::Device device,
                                                           const Status& status) {
  std::string key = s.vocab + "|" + device.str();
  for (const auto& m : s.clip_models) key += "|" + m;
  if (key != key_) {
    key_.clear();
    members_ = load_members(s, device, status);
    key_ = key;
  }
  return members_;
}

guidance::GuideLoop::ProcessSum process_sum(train::Communicator& comm) {
  return [&comm](guidance::GuideReport& r, const std::vector<at::Tensor>& parameters) {
    std::vector<double*> numbers = {&r.total, &r.prompt_loss, &r.tv, &r.symmetry, &r.saturation, &r.init};
    for (auto& p : r.prompts) {
      numbers.push_back(&p.loss);
      numbers.push_back(&p.similarity);
      for (auto& v : p.member_loss) numbers.push_back(&v);
      for (auto& v : p.member_similarity) numbers.push_back(&v);
    }
    for (auto& m : r.members) numbers.push_back(&m.loss);
    std::vector<double> values;
    for (const double* n : numbers) values.push_back(*n);
    at::Tensor packed = at::from_blob(values.data(), {static_cast<int64_t>(values.size())}, at::kDouble);
    comm.all_reduce_sum_(packed);  // in place, into `values`
    for (size_t i = 0; i < numbers.size(); ++i) *numbers[i] = values[i];
    train::sum_gradients(comm, parameters);
  };
}

std::map<std::string, std::string> image_metadata(const std::string& settings_toml, c10::Device device) {
  return {{kSettingsKey, settings_toml},
          {"clipguide:version", CLIPGUIDE_VERSION},
          {"clipguide:torch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                                  std::to_string(TORCH_VERSION_PATCH)},
          {"clipguide:device", device.str()}};
}

guidance::GuideOptions guide_options(const RunSettings& s, uint64_t seed) {
  guidance::GuideOptions o;
  o.autocast = autocast_type(s);
  o.cuda_graphs = s.cuda_graphs;
  o.cutn_batches = s.cutn_batches;
  o.cutouts.cutn = s.num_cuts;
  o.cutouts.cut_pow = s.cut_power;
  o.cutouts.min_size = s.cut_min;
  o.cutouts.method = guidance::parse_cut_method(s.cut_method);
  o.augments = guidance::parse_augments(s.augments);
  o.tv_weight = s.tv_weight;
  o.init_weight = s.init_weight;
  o.seed = seed;
  return o;
}

std::vector<std::vector<guidance::GuidePrompt>> prompt_phases(const RunSettings& s, const std::string& specs) {
  const char* none = "no prompts: give --prompts text, --image_prompts files and/or --noise_prompt_seeds";
  std::vector<std::vector<guidance::GuidePrompt>> phases;
  size_t start = 0;
  while (start <= specs.size()) {
    size_t end = specs.find('^', start);
    if (end == std::string::npos) end = specs.size();
    std::vector<guidance::GuidePrompt> prompts = guidance::text_prompts(specs.substr(start, end - start));
    for (const auto& spec : guidance::parse_prompts(s.image_prompts)) {
      prompts.push_back(guidance::GuidePrompt::from_spec(spec, /*image=*/true));
    }
    for (size_t i = 0; i < s.noise_prompt_seeds.size(); ++i) {
      prompts.push_back(guidance::GuidePrompt::from_noise(static_cast<uint64_t>(s.noise_prompt_seeds[i]),
                                                          s.noise_prompt_weights.at(i)));
    }
    if (prompts.empty()) throw Error(none);
    phases.push_back(std::move(prompts));
    start = end + 1;
  }
  return phases;
}

guidance::LoopSettings loop_settings(const RunSettings& s) {
  guidance::LoopSettings l;
  l.optimizer = s.optimiser;
  l.learning_rate = s.learning_rate;
  return l;
}

}  // namespace clipguide::app
