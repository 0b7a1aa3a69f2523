// GeneratorRegistry: name -> factory and declared files, filled at static-initialisation time by CLIPGUIDE_REGISTER_GENERATOR;
// extra_number and parse_extra, the shared parsers of generator settings; check_image_size and
// init_image_to_size, the shared checks.
// The map is a function-local static so registrations from any translation unit see it constructed.
#include "generators/generator.h"

#include "core/error.h"

#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <exception>

namespace clipguide::generators {

namespace {

struct Entry {
  GeneratorFactory factory;
  GeneratorFiles files;
};

std::map<std::string, Entry>& entries() {
  static std::map<std::string, Entry> map;
  return map;
}

const Entry& entry(const std::string& name) {
  auto it = entries().find(name);
  if (it == entries().end()) {
    std::string known;
    for (const auto& e : entries()) known += (known.empty() ? "" : ", ") + e.first;
    throw Error("unknown generator '" + name + "' (known: " + (known.empty() ? "none" : known) + ")");
  }
  return it->second;
}

}  // namespace

void GeneratorRegistry::add(const std::string& name, GeneratorFactory factory, GeneratorFiles files) {
  // A duplicate is a programming error (two generators claiming one name): fail at load, loudly.
  if (!entries().emplace(name, Entry{std::move(factory), std::move(files)}).second) {
    throw Error("generator '" + name + "' is registered twice");
  }
}

std::unique_ptr<Generator> GeneratorRegistry::create(const std::string& name, const GeneratorOptions& options) {
  return entry(name).factory(options);
}

const GeneratorFiles& GeneratorRegistry::files(const std::string& name) { return entry(name).files; }

double extra_number(const std::map<std::string, std::string>& extra, const std::string& key, double fallback,
                    const std::string& generator) {
  auto it = extra.find(key);
  if (it == extra.end()) return fallback;
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != it->second.size() || !std::isfinite(value)) {
    throw Error(generator + " generator: extra[\"" + key + "\"] = '" + it->second + "' is not a finite number");
  }
  return value;
}

std::vector<std::string> GeneratorRegistry::names() {
  std::vector<std::string> out;
  for (const auto& e : entries()) out.push_back(e.first);
  return out;
}

void check_image_size(const GeneratorOptions& options, const std::string& generator) {
  if (options.batch >= 1 && options.height >= 1 && options.width >= 1) return;
  throw Error(generator + " generator: need batch, width and height >= 1; got " + std::to_string(options.width) + "x" +
              std::to_string(options.height) + ", batch " + std::to_string(options.batch));
}

std::map<std::string, std::string> parse_extra(const std::vector<std::string>& key_values, const std::string& flag) {
  std::map<std::string, std::string> extra;
  for (const auto& kv : key_values) {
    if (kv.empty()) continue;
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw Error(flag + ": expected key=value, got '" + kv + "'");
    extra[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return extra;
}

at::Tensor init_image_to_size(const at::Tensor& image, int64_t batch, int64_t height, int64_t width,
                              c10::Device device, const std::string& generator) {
  if (image.dim() != 4 || image.size(1) != 3 || (image.size(0) != 1 && image.size(0) != batch)) {
    throw Error(generator + " generator: init image must be (1 or " + std::to_string(batch) + ", 3, H, W); got " +
                shape_str(image.sizes()));
  }
  at::NoGradGuard no_grad;
  auto x = image.to(device, at::kFloat);  // (B or 1, 3, H', W') in [0, 1]
  if (x.size(2) != height || x.size(3) != width) {
    x = at::_upsample_bicubic2d_aa(x, {height, width}, /*align_corners=*/false).clamp(0, 1);
  }
  return x;
}

}  // namespace clipguide::generators
