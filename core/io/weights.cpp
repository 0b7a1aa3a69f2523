// Format detection and the torch.save unwrapping rules behind read_weights (see weights.h).
#include "core/io/weights.h"

#include "core/error.h"
#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "core/io/torch_archive.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <sstream>

namespace clipguide {

namespace {

using Kind = PickleValue::Kind;

// Wrapper keys of training checkpoints, in order of preference (see weights.h).
const char* const kWrapperKeys[] = {"state_dict", "model_state_dict", "model", "module"};
constexpr int kMaxUnwrap = 4;
constexpr const char* kDataParallelPrefix = "module.";

// pickle PROTO 2, then LONG1 of the legacy format's magic number 0x1950a86a20f9469cfc6c.
const unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool has_direct_tensor(const PickleValue& dict) {
  return std::any_of(dict.entries.begin(), dict.entries.end(),
                     [](const auto& kv) { return kv.second && kv.second->kind == Kind::kTensor; });
}

PickleValuePtr unwrap_checkpoint(PickleValuePtr root) {
  for (int level = 0; level < kMaxUnwrap && root && root->kind == Kind::kDict && !has_direct_tensor(*root); ++level) {
    PickleValuePtr inner;
    for (const char* key : kWrapperKeys) {
      auto candidate = root->get(key);
      if (candidate && (candidate->kind == Kind::kDict || candidate->kind == Kind::kObject)) {
        inner = candidate;
        break;
      }
    }
    if (!inner) break;
    root = inner;
  }
  return root;
}

void strip_data_parallel_prefix(TensorMap& tensors) {
  const std::string prefix = kDataParallelPrefix;
  while (!tensors.empty() && std::all_of(tensors.begin(), tensors.end(), [&](const auto& kv) {
           return kv.first.size() > prefix.size() && kv.first.compare(0, prefix.size(), prefix) == 0;
         })) {
    TensorMap stripped;
    for (auto& [name, tensor] : tensors) stripped.emplace(name.substr(prefix.size()), std::move(tensor));
    tensors = std::move(stripped);
  }
}

std::string hex_prefix(const std::string& bytes) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < std::min<size_t>(bytes.size(), 8); ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", static_cast<unsigned char>(bytes[i]));
    out += (i ? " " : "") + std::string(buf);
  }
  return out;
}

}  // namespace

std::string to_string(WeightFormat format) {
  switch (format) {
    case WeightFormat::kSafetensors: return "safetensors";
    case WeightFormat::kTorchZip: return "torch.save zip";
    case WeightFormat::kTorchScript: return "TorchScript";
  }
  return "unknown";
}

namespace {

WeightFile read_any(const std::filesystem::path& path) {
  const std::string head = io::read_file_prefix(path, 16);
  WeightFile result;
  if (head.size() >= 4 && head.compare(0, 2, "PK") == 0 && (head[2] == '\x03' || head[2] == '\x05')) {
    TorchArchive archive = read_torch_archive(path);
    const std::string source = "torch archive '" + path.string() + "'";
    if (archive.torchscript) {
      result.format = WeightFormat::kTorchScript;
      result.tensors = flatten_tensors(archive.data, source);
      // __torch__.* are TorchScript's own module classes: expected, so not reported as skipped.
      for (auto& name : archive.skipped_classes) {
        if (name.rfind("__torch__.", 0) != 0) result.skipped_classes.push_back(std::move(name));
      }
    } else {
      result.format = WeightFormat::kTorchZip;
      result.tensors = flatten_tensors(unwrap_checkpoint(archive.data), source);
      strip_data_parallel_prefix(result.tensors);
      result.skipped_classes = std::move(archive.skipped_classes);
    }
    return result;
  }
  if (head.size() >= 9 && head[8] == '{') {
    SafetensorsFile file = read_safetensors(path);
    result.format = WeightFormat::kSafetensors;
    result.tensors = std::move(file.tensors);
    result.metadata = std::move(file.metadata);
    return result;
  }
  if (head.size() >= sizeof(kLegacyMagic) && std::equal(std::begin(kLegacyMagic), std::end(kLegacyMagic), head.begin(),
                                                        [](unsigned char a, char b) { return a == static_cast<unsigned char>(b); })) {
    throw Error("weight file '" + path.string() + "': legacy (pre-1.6, non-zip) torch.save format is not supported; "
                "re-save it with torch>=1.6: torch.save(torch.load(old), new)");
  }
  if (!head.empty() && static_cast<unsigned char>(head[0]) == 0x80) {
    throw Error("weight file '" + path.string() + "': a bare pickle, not a torch.save zip archive or safetensors file");
  }
  throw Error("weight file '" + path.string() + "': unrecognized format (first bytes: " +
              (head.empty() ? std::string("none, empty file") : hex_prefix(head)) +
              "), expected safetensors, a torch.save zip or a TorchScript archive");
}

bool log_loads() {
  static const bool enabled = [] {
    const char* env = std::getenv("CLIPGUIDE_LOG_LOADS");
    return env != nullptr && *env != '\0' && std::string(env) != "0";
  }();
  return enabled;
}

}  // namespace

WeightFile read_weights(const std::filesystem::path& path) {
  if (!log_loads()) return read_any(path);
  const auto start = std::chrono::steady_clock::now();
  WeightFile file = read_any(path);
  size_t bytes = 0;
  for (const auto& [name, t] : file.tensors) bytes += t.nbytes();
  char what[96];
  std::snprintf(what, sizeof what, "%s, %zu tensors, %.1f MiB", to_string(file.format).c_str(), file.tensors.size(),
                bytes / 1048576.0);
  log_weight_read(path, what, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return file;
}

namespace {

// Seconds since this process started: now (CLOCK_BOOTTIME) minus the start time in /proc/self/stat (field
// 22, clock ticks since boot); -1 when /proc cannot tell.
double seconds_since_start() {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i < 22 && fields >> field; ++i) {
  }
  unsigned long long ticks = 0;
  if (!(fields >> ticks)) return -1;
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  return static_cast<double>(now.tv_sec) + now.tv_nsec * 1e-9 - static_cast<double>(ticks) / sysconf(_SC_CLK_TCK);
}

}  // namespace

void log_since_start(const std::string& event) {
  if (!log_loads()) return;
  std::fprintf(stderr, "clipguide: %s %.2f s after the process started\n", event.c_str(), seconds_since_start());
}

void log_weight_read(const std::filesystem::path& path, const std::string& what, double seconds) {
  if (!log_loads()) return;
  std::fprintf(stderr, "clipguide: read weights '%s' (%s) in %.3f s\n", path.c_str(), what.c_str(), seconds);
}

}  // namespace clipguide
