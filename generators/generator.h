// The generator interface: something with trainable parameters that renders an image. Guidance, the tools
// and the GUI see generators only through this header and the registry; adding one is one line:
//   CLIPGUIDE_REGISTER_GENERATOR("pixel", PixelGenerator);
// Shapes: B batch, H x W image.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace clipguide::generators {

using TensorMap = std::map<std::string, at::Tensor>;

// What every generator is built from. Fields a generator does not use are ignored.
struct GeneratorOptions {
  int64_t width = 256;                   // output width in pixels; a generator with size_factor() > 1 renders
                                         // it rounded down to a multiple (VQGAN+CLIP: toksX = width // f)
  int64_t height = 256;                  // output height in pixels
  int64_t batch = 1;                     // images rendered at once
  c10::Device device = c10::kCPU;        // where parameters live
  std::filesystem::path weights;         // weight file (VQGAN checkpoint, TorchScript module, ...)
  std::filesystem::path config;          // architecture file (VQGAN YAML, ...), empty: infer from the weights
  uint64_t seed = 0;                     // initial random state
  std::map<std::string, std::string> extra;  // generator-specific settings ("decay_power" for fourier, ...)
  // Speed settings for generators with a network (vqgan); the others ignore them.
  at::ScalarType autocast = at::kFloat;  // kBFloat16 / kHalf: the network in render() runs under autocast
                                         // (fp32 weights; render() still returns float); kFloat: off
  bool channels_last = false;            // weights and activations channels-last (NHWC): faster CUDA convolutions
  bool checkpoint = false;               // activation checkpointing: the network's activations are recomputed in
                                         // backward stage by stage (vqgan: per decoder block) instead of kept;
                                         // same gradient, less memory, about one more forward of time
};

class Generator {
 public:
  virtual ~Generator() = default;
  virtual std::string name() const = 0;
  // Tensors the optimiser updates (leaf tensors with requires_grad).
  virtual std::vector<at::Tensor> parameters() = 0;
  // (B, 3, H, W) in [0, 1], differentiable w.r.t. parameters().
  virtual at::Tensor render() = 0;
  // Sets the parameters so that render() approximates `image`, (B or 1, 3, H, W) in [0, 1].
  virtual void init_from_image(const at::Tensor& image) = 0;
  // Fresh random parameters from `seed`.
  virtual void init_random(uint64_t seed) = 0;
  // Shape of the main latent tensor (for display and for init noise).
  virtual std::vector<int64_t> latent_shape() const = 0;
  // Width and height must be multiples of this (VQGAN f16: 16).
  virtual int64_t size_factor() const { return 1; }
  // Called after each optimiser step (e.g. clamp a VQGAN latent to its codebook's range).
  virtual void post_step() {}
  // Everything needed to resume: parameters and buffers by name.
  virtual TensorMap state() const = 0;
  virtual void load_state(const TensorMap& state) = 0;
  // Another generator of this kind built from `options` (size, batch, seed, checkpoint, extra) that shares
  // this one's network and weights, so no file is read again (options.weights, config and device are not
  // used). The memory planner probes small sizes with it (app/memory_plan.h). nullptr: this generator cannot.
  virtual std::unique_ptr<Generator> rebuilt(const GeneratorOptions& options) const { return nullptr; }
};

// Generator::rebuilt() of a generator without weights: a new G from `options` on `device` (the generator's own).
template <class G>
std::unique_ptr<Generator> rebuilt_on(c10::Device device, GeneratorOptions options) {
  options.device = device;
  return std::make_unique<G>(options);
}

// GeneratorOptions::extra[key] as a finite number, or `fallback` when absent; a clipguide::Error naming the
// generator, the key and the value otherwise.
double extra_number(const std::map<std::string, std::string>& extra, const std::string& key, double fallback,
                    const std::string& generator);

// "key=value" strings (the tools' --generator_option) as GeneratorOptions::extra. Empty strings are skipped
// (an empty list round-trips through TOML as one); anything else without a key is a clipguide::Error naming
// `flag`.
std::map<std::string, std::string> parse_extra(const std::vector<std::string>& key_values, const std::string& flag);

// init_from_image's argument checked and brought to the generator's size: `image` must be (1 or batch, 3,
// H', W') (a clipguide::Error naming the generator otherwise). Returns it as float on `device`, (1 or batch,
// 3, height, width), resized when needed with antialiased bicubic (VQGAN+CLIP resizes with PIL's Lanczos;
// this is the closest ATen has) and then clamped to [0, 1], since bicubic overshoots. No autograd.
at::Tensor init_image_to_size(const at::Tensor& image, int64_t batch, int64_t height, int64_t width,
                              c10::Device device, const std::string& generator);

// A clipguide::Error naming the generator unless options.batch, width and height are all >= 1.
void check_image_size(const GeneratorOptions& options, const std::string& generator);

using GeneratorFactory = std::function<std::unique_ptr<Generator>(const GeneratorOptions&)>;

// The files a generator is built from (GeneratorOptions::weights and ::config), declared by the names of
// the run settings that give them (app/settings.h: clip-guide's flags, TOML keys and the studio's fields),
// so the programs above never name a generator. A generator that declares its own weights setting is the
// one a run uses when that setting is given and --generator is not (--vqgan_checkpoint alone means vqgan).
struct GeneratorFiles {
  std::string weights = "generator_weights";  // the setting holding GeneratorOptions::weights
  std::string config;                         // the setting holding GeneratorOptions::config; "": none
  bool weights_required = false;              // a run without weights is refused before anything loads
};

// Name → factory. Registration happens at static-initialisation time through CLIPGUIDE_REGISTER_GENERATOR.
class GeneratorRegistry {
 public:
  static void add(const std::string& name, GeneratorFactory factory, GeneratorFiles files = {});
  // The files `name` declared; a clipguide::Error listing the known names when it is unknown.
  static const GeneratorFiles& files(const std::string& name);
  // Throws clipguide::Error listing the known names when `name` is unknown.
  static std::unique_ptr<Generator> create(const std::string& name, const GeneratorOptions& options);
  static std::vector<std::string> names();
};

namespace detail {
struct Registrar {
  Registrar(const std::string& name, GeneratorFactory factory, GeneratorFiles files) {
    GeneratorRegistry::add(name, std::move(factory), std::move(files));
  }
};
}  // namespace detail

#define CLIPGUIDE_REGISTER_GENERATOR(name, Class, ...)                                         \
  static const ::clipguide::generators::detail::Registrar clipguide_generator_registrar_##Class( \
      name, [](const ::clipguide::generators::GeneratorOptions& o) { return std::make_unique<Class>(o); }, \
      ::clipguide::generators::GeneratorFiles{__VA_ARGS__})

}  // namespace clipguide::generators
