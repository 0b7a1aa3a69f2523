// A restricted pickle reader (protocols 0-5, the opcodes torch.save, torch.jit.save and Lightning
// write) that builds a value tree and never executes anything: GLOBAL resolves only a fixed whitelist
// of functions it understands (tensor and parameter rebuilds, OrderedDict, torch dtypes, ...); every
// other class or function becomes an inert Object and is reported in skipped_classes.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/core/Storage.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace clipguide {

struct PickleValue;
using PickleValuePtr = std::shared_ptr<PickleValue>;

// One node of an unpickled value tree. Containers are shared (the pickle memo may reference one
// twice, and the tree may even contain cycles: walkers must guard against them).
struct PickleValue {
  enum class Kind {
    kNone, kBool, kInt, kFloat, kString, kBytes,
    kTuple, kList, kDict,
    kGlobal,   // a class or function reference that was never called (text: "module.name")
    kObject,   // an inert instance of a non-whitelisted class (text: class name; args, state, items, entries)
    kStorage,  // a tensor storage from a persistent id (storage, storage_dtype)
    kTensor,   // a rebuilt tensor (tensor)
  };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;                                                 // string, bytes, global/object class name
  std::vector<PickleValuePtr> items;                                // tuple, list; object: APPENDed items
  std::vector<std::pair<PickleValuePtr, PickleValuePtr>> entries;  // dict (insertion order); object: SETITEMs
  PickleValuePtr args;                                              // object: constructor arguments
  PickleValuePtr state;                                             // object: BUILD state
  at::Storage storage;                                              // storage
  at::ScalarType storage_dtype = at::kByte;                         // storage: element type of its typed form
  at::Tensor tensor;                                                // tensor

  // Dict entry with this string key, or nullptr (also for non-dicts).
  PickleValuePtr get(const std::string& key) const;
  bool is_string() const { return kind == Kind::kString; }
  // "dict", "tuple", "Object(argparse.Namespace)", ... for error messages.
  std::string describe() const;

  ~PickleValue();  // iterative: a hostile pickle may nest millions deep

  static PickleValuePtr make(Kind kind);
  static PickleValuePtr make_string(std::string s);
  static PickleValuePtr make_int(int64_t v);
};

// Called for BINPERSID/PERSID with the persistent id (torch: ('storage', type, key, location, numel));
// returns the value that stands for it (a kStorage).
using PersistentLoad = std::function<PickleValuePtr(const PickleValue& pid)>;

struct PickleResult {
  PickleValuePtr value;                      // the pickled object
  std::vector<std::string> skipped_classes;  // non-whitelisted globals, first-seen order, no duplicates
};

// Runs the restricted pickle machine over `data`. `source` names the pickle in errors
// ("'model.pt' archive/data.pkl"). Throws clipguide::Error naming the source, opcode and byte offset
// for unknown opcodes, truncation, stack misuse and malformed tensor rebuilds.
PickleResult read_pickle(const uint8_t* data, size_t size, const std::string& source,
                         const PersistentLoad& persistent_load = nullptr);

// Storage class name as pickled ("torch.FloatStorage", "torch.cuda.HalfStorage") -> element type;
// "torch.storage.UntypedStorage" -> kByte. nullopt when unknown.
std::optional<at::ScalarType> storage_type_dtype(const std::string& class_name);

}  // namespace clipguide
