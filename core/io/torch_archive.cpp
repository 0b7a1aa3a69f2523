// torch.save / torch.jit.save zip archives: records via caffe2::serialize::PyTorchStreamReader
// (LibTorch's own zip reader; it handles both kinds), storages from data/<key>, tensors rebuilt by
// the restricted pickle reader.
// ref: pytorch/pytorch@v2.4.0 torch/serialization.py (_save persistent_id, _load persistent_load)
#include "core/io/torch_archive.h"

#include "core/error.h"

#include <c10/core/Storage.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>

#include <map>
#include <set>
#include <tuple>

namespace clipguide {

namespace {

using Kind = PickleValue::Kind;

constexpr int kMaxNesting = 256;

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error("torch archive '" + path.string() + "': " + what);
}

// Runs a PyTorchStreamReader call, turning its c10::Error into a clipguide::Error naming the file.
template <typename F>
auto guarded(const std::filesystem::path& path, const std::string& doing, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    fail(path, doing + ": " + e.what_without_backtrace());
  }
}

// One record's bytes. PyTorch stores records uncompressed, so a record claiming more bytes than the
// whole file comes from a corrupt zip directory: refused before anything is allocated.
std::tuple<at::DataPtr, size_t> read_record(caffe2::serialize::PyTorchStreamReader& reader,
                                            const std::filesystem::path& path, uint64_t file_size,
                                            const std::string& name) {
  const uint64_t claimed = guarded(path, "record '" + name + "'", [&] { return reader.getRecordSize(name); });
  if (claimed > file_size) {
    fail(path, "record '" + name + "' claims " + std::to_string(claimed) + " bytes, more than the file's " +
                   std::to_string(file_size) + " (corrupt zip directory)");
  }
  auto record = guarded(path, "reading record '" + name + "'", [&] { return reader.getRecord(name); });
  if (std::get<1>(record) != claimed) {
    fail(path, "record '" + name + "' read " + std::to_string(std::get<1>(record)) + " bytes, expected " +
                   std::to_string(claimed));
  }
  return record;
}

}  // namespace

TorchArchive read_torch_archive(const std::filesystem::path& path) {
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot read: " + ec.message());
  auto reader = guarded(path, "not a readable zip archive", [&] {
    return std::make_unique<caffe2::serialize::PyTorchStreamReader>(path.string());
  });

  TorchArchive archive;
  archive.records = guarded(path, "listing records", [&] { return reader->getAllRecords(); });
  const std::set<std::string> records(archive.records.begin(), archive.records.end());
  if (!records.count("data.pkl")) {
    fail(path, "no data.pkl record: a zip file, but not written by torch.save or torch.jit.save");
  }
  for (const auto& r : archive.records) {
    if (r == "constants.pkl" || r.rfind("code/", 0) == 0) archive.torchscript = true;
  }
  if (records.count("byteorder")) {
    auto [bytes, size] = read_record(*reader, path, file_size, "byteorder");
    const std::string order(static_cast<const char*>(bytes.get()), size);
    if (order != "little") {
      fail(path, "byteorder record got '" + order + "', expected 'little': big-endian archives are not supported "
                 "(re-save on a little-endian machine)");
    }
  }

  // Storages by key: several tensors (views) share one, and the memo usually dedups the pid anyway.
  std::map<std::string, PickleValuePtr> storages;
  PersistentLoad load = [&](const PickleValue& pid) -> PickleValuePtr {
    const auto& t = pid.items;
    if (pid.kind != Kind::kTuple || t.size() < 5 || !t[0]->is_string() || t[0]->text != "storage" ||
        t[1]->kind != Kind::kGlobal || !t[2]->is_string() || t[4]->kind != Kind::kInt) {
      fail(path, "data.pkl: persistent id got a " + pid.describe() +
                     ", expected ('storage', storage type, key, location, numel)");
    }
    const std::string& key = t[2]->text;
    if (auto it = storages.find(key); it != storages.end()) return it->second;
    const auto dtype = storage_type_dtype(t[1]->text);
    if (!dtype) fail(path, "data.pkl: storage '" + key + "' has unknown storage type " + t[1]->text);
    const std::string name = "data/" + key;
    if (!records.count(name)) fail(path, "missing record '" + name + "' (storage of " + t[1]->text + ")");
    const int64_t numel = t[4]->integer;
    const uint64_t element = c10::elementSize(*dtype);
    const uint64_t record_size = guarded(path, "record '" + name + "'", [&] { return reader->getRecordSize(name); });
    if (numel < 0 || static_cast<uint64_t>(numel) > record_size / element) {
      fail(path, "record '" + name + "' got " + std::to_string(record_size) + " bytes, expected " +
                     std::to_string(numel) + " x " + std::to_string(element) + " bytes (" + t[1]->text + ")");
    }
    auto [data, size] = read_record(*reader, path, file_size, name);
    auto value = PickleValue::make(Kind::kStorage);
    value->storage_dtype = *dtype;
    value->storage = c10::Storage(c10::Storage::use_byte_size_t(), static_cast<int64_t>(numel * element),
                                  std::move(data), /*allocator=*/nullptr, /*resizable=*/false);
    storages.emplace(key, value);
    return value;
  };

  auto [pkl, pkl_size] = read_record(*reader, path, file_size, "data.pkl");
  PickleResult result = read_pickle(static_cast<const uint8_t*>(pkl.get()), pkl_size,
                                    "'" + path.string() + "' data.pkl", load);
  archive.data = std::move(result.value);
  archive.skipped_classes = std::move(result.skipped_classes);
  return archive;
}

namespace {

class Flattener {
 public:
  explicit Flattener(const std::string& source) : source_(source) {}

  void walk(const PickleValuePtr& v, const std::string& name, int depth) {
    if (!v) return;
    // A value the memo shares is visited once per path to it: a DAG of n levels, each referring twice to
    // the one below, has 2^n paths. Real checkpoints have a few per tensor.
    if (++visits_ > kMaxVisits) {
      throw Error(source_ + ": refused: its values are shared so often that listing its tensors would visit more than " +
                  std::to_string(kMaxVisits) + " entries (a pickle bomb?)");
    }
    if (depth > kMaxNesting) {
      throw Error(source_ + ": values nested deeper than " + std::to_string(kMaxNesting) + " levels at '" + name + "'");
    }
    if (v->kind == Kind::kTensor) {
      out_.insert_or_assign(name, v->tensor);  // a later duplicate key wins, as in Python
      return;
    }
    if (v->kind != Kind::kDict && v->kind != Kind::kList && v->kind != Kind::kTuple && v->kind != Kind::kObject) return;
    if (!active_.insert(v.get()).second) return;  // a cycle
    for (const auto& [key, value] : v->entries) walk(value, join(name, key_text(key)), depth + 1);
    for (size_t i = 0; i < v->items.size(); ++i) walk(v->items[i], join(name, std::to_string(i)), depth + 1);
    if (v->kind == Kind::kObject && v->state) {
      if (v->state->kind == Kind::kDict) {
        for (const auto& [key, value] : v->state->entries) {
          // A pickled nn.Module's attribute dicts: their contents carry the state-dict names directly.
          const std::string k = key_text(key);
          const bool transparent = k == "_parameters" || k == "_buffers" || k == "_modules";
          walk(value, transparent ? name : join(name, k), depth + 1);
        }
      } else {
        walk(v->state, name, depth + 1);
      }
    }
    active_.erase(v.get());
  }

  TensorMap take() { return std::move(out_); }

 private:
  static std::string join(const std::string& prefix, const std::string& key) {
    return prefix.empty() ? key : prefix + "." + key;
  }
  // Dict keys are names when strings or ints (optimizer state uses int keys); others get "?".
  static std::string key_text(const PickleValuePtr& key) {
    if (key && key->kind == Kind::kString) return key->text;
    if (key && key->kind == Kind::kInt) return std::to_string(key->integer);
    return "?";
  }

  static constexpr uint64_t kMaxVisits = 2'000'000;
  std::string source_;
  TensorMap out_;
  std::set<const PickleValue*> active_;
  uint64_t visits_ = 0;
};

}  // namespace

TensorMap flatten_tensors(const PickleValuePtr& root, const std::string& source) {
  Flattener flattener(source);
  flattener.walk(root, "", 0);
  return flattener.take();
}

}  // namespace clipguide
