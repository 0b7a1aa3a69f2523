// Restricted pickle machine: the opcode subset of protocols 0-5 that PyTorch checkpoints use, with a
// whitelist instead of imports. Nothing in a pickle can make this code run or construct anything
// beyond plain values, tensors over already-read storages, and inert Object records.
// ref: cpython@v3.11.0 Lib/pickletools.py (opcode table), Lib/pickle.py (_Unpickler.load_*)
// ref: pytorch/pytorch@v2.4.0 torch/_utils.py (_rebuild_tensor_v2/_v3, _rebuild_parameter)
//
// [SECTION] value helpers  [SECTION] whitelist  [SECTION] machine  [SECTION] entry point
#include "core/io/pickle.h"

#include "core/error.h"

#include <ATen/ops/empty.h>
#include <c10/util/safe_numerics.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <unordered_map>

namespace clipguide {

// [SECTION] value helpers ---------------------------------------------------------------------------

using Kind = PickleValue::Kind;

PickleValuePtr PickleValue::make(Kind kind) {
  auto v = std::make_shared<PickleValue>();
  v->kind = kind;
  return v;
}

PickleValuePtr PickleValue::make_string(std::string s) {
  auto v = make(Kind::kString);
  v->text = std::move(s);
  return v;
}

PickleValuePtr PickleValue::make_int(int64_t i) {
  auto v = make(Kind::kInt);
  v->integer = i;
  return v;
}

PickleValuePtr PickleValue::get(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  // Last entry wins, as in Python (SETITEM never de-duplicates here, to stay linear).
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->first && it->first->kind == Kind::kString && it->first->text == key) return it->second;
  }
  return nullptr;
}

std::string PickleValue::describe() const {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kGlobal: return "global " + text;
    case Kind::kObject: return "Object(" + text + ")";
    case Kind::kStorage: return "storage";
    case Kind::kTensor: return "tensor";
  }
  return "?";
}

// ~PickleValue would recurse once per nesting level; a hostile pickle nests millions deep. The
// implicit destructor is replaced by this explicit tear-down through a work list.
namespace {
void take_children(PickleValue& v, std::vector<PickleValuePtr>& work) {
  for (auto& item : v.items) work.push_back(std::move(item));
  for (auto& [key, value] : v.entries) {
    work.push_back(std::move(key));
    work.push_back(std::move(value));
  }
  if (v.args) work.push_back(std::move(v.args));
  if (v.state) work.push_back(std::move(v.state));
  v.items.clear();
  v.entries.clear();
}
}  // namespace

PickleValue::~PickleValue() {
  std::vector<PickleValuePtr> work;
  take_children(*this, work);
  while (!work.empty()) {
    PickleValuePtr p = std::move(work.back());
    work.pop_back();
    if (p && p.use_count() == 1) take_children(*p, work);
  }
}

// [SECTION] whitelist --------------------------------------------------------------------------------

namespace {

struct NamedType {
  const char* name;
  at::ScalarType type;
};

// Typed storage classes torch.save writes (torch/storage.py _dtype_to_storage_type_map).
constexpr NamedType kStorageTypes[] = {
    {"DoubleStorage", at::kDouble},  {"FloatStorage", at::kFloat},   {"HalfStorage", at::kHalf},
    {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong},  {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort},    {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
    {"BoolStorage", at::kBool},      {"ComplexFloatStorage", at::kComplexFloat},
    {"ComplexDoubleStorage", at::kComplexDouble},
};

// torch dtype objects as pickled by name (`torch.float16`), used by _rebuild_tensor_v3.
constexpr NamedType kTorchDtypes[] = {
    {"float64", at::kDouble}, {"double", at::kDouble}, {"float32", at::kFloat}, {"float", at::kFloat},
    {"float16", at::kHalf}, {"half", at::kHalf}, {"bfloat16", at::kBFloat16},
    {"int64", at::kLong}, {"long", at::kLong}, {"int32", at::kInt}, {"int", at::kInt},
    {"int16", at::kShort}, {"short", at::kShort}, {"int8", at::kChar}, {"uint8", at::kByte},
    {"bool", at::kBool}, {"complex64", at::kComplexFloat}, {"cfloat", at::kComplexFloat},
    {"complex128", at::kComplexDouble}, {"cdouble", at::kComplexDouble},
    {"uint16", at::kUInt16}, {"uint32", at::kUInt32}, {"uint64", at::kUInt64},
    {"float8_e4m3fn", at::kFloat8_e4m3fn}, {"float8_e5m2", at::kFloat8_e5m2},
    {"float8_e4m3fnuz", at::kFloat8_e4m3fnuz}, {"float8_e5m2fnuz", at::kFloat8_e5m2fnuz},
};

std::optional<at::ScalarType> torch_dtype(const std::string& global_name) {
  const std::string prefix = "torch.";
  if (global_name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string name = global_name.substr(prefix.size());
  for (const auto& d : kTorchDtypes) {
    if (name == d.name) return d.type;
  }
  return std::nullopt;
}

// Functions the machine "calls" itself (by re-implementing what they mean on values), and class
// references that are safe to resolve because they are only ever used as tags.
const std::set<std::string>& known_globals() {
  static const std::set<std::string> kKnown = {
      "torch._utils._rebuild_tensor",         "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor_v3",      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2",
      "collections.OrderedDict",              "torch.device",
      "torch.Size",                           "_codecs.encode",
      "builtins.set",                         "__builtin__.set",
      "builtins.frozenset",                   "__builtin__.frozenset",
      "torch.jit._pickle.build_intlist",      "torch.jit._pickle.build_doublelist",
      "torch.jit._pickle.build_boollist",     "torch.jit._pickle.build_tensorlist",
      "torch.jit._pickle.build_genericlist",  "torch.jit._pickle.restore_type_tag",
      "torch.Tensor",                         "torch._tensor.Tensor",
      "torch.nn.parameter.Parameter",
  };
  return kKnown;
}

bool is_known_global(const std::string& name) {
  return known_globals().count(name) > 0 || storage_type_dtype(name).has_value() || torch_dtype(name).has_value();
}

// UTF-8 text whose code points are all below 256 -> those bytes (what _codecs.encode(s, "latin1") does).
std::optional<std::string> utf8_to_latin1(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      const unsigned cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      if (cp > 0xFF) return std::nullopt;
      out += static_cast<char>(cp);
      ++i;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | ((cp >> 18) & 0x07));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Protocol 0's UNICODE argument: latin-1 bytes with \uXXXX and \UXXXXXXXX escapes -> UTF-8.
std::string raw_unicode_escape_to_utf8(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
      const size_t digits = s[i + 1] == 'u' ? 4 : 8;
      if (i + 2 + digits <= s.size()) {
        const std::string hex = s.substr(i + 2, digits);
        if (hex.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
          append_utf8(out, static_cast<uint32_t>(std::stoul(hex, nullptr, 16)));
          i += 1 + digits;
          continue;
        }
      }
    }
    append_utf8(out, static_cast<unsigned char>(s[i]));
  }
  return out;
}

}  // namespace

std::optional<at::ScalarType> storage_type_dtype(const std::string& class_name) {
  if (class_name == "torch.storage.UntypedStorage" || class_name == "torch.UntypedStorage" ||
      class_name == "torch.storage._UntypedStorage") {
    return at::kByte;
  }
  // "torch.FloatStorage" or "torch.cuda.FloatStorage" (a CUDA checkpoint: we load to CPU anyway).
  const auto dot = class_name.rfind('.');
  if (dot == std::string::npos) return std::nullopt;
  const std::string module = class_name.substr(0, dot);
  if (module != "torch" && module != "torch.cuda") return std::nullopt;
  const std::string name = class_name.substr(dot + 1);
  for (const auto& s : kStorageTypes) {
    if (name == s.name) return s.type;
  }
  return std::nullopt;
}

// [SECTION] machine ----------------------------------------------------------------------------------

namespace {

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, const std::string& source, const PersistentLoad& persistent_load)
      : data_(data), size_(size), source_(source), persistent_load_(persistent_load) {}

  PickleResult run();

 private:
  // Work done so far, in values created, copied or moved: bounded per file so that a small pickle cannot
  // keep the reader busy for minutes (a set rebuilt from a growing list is quadratic in the file's size).
  void charge(uint64_t units) {
    work_ += units;
    if (work_ > work_limit_) {
      fail("refused: reading it would take more than " + std::to_string(work_limit_) + " steps for a pickle of " +
           std::to_string(size_) + " bytes (values copied over and over: a pickle bomb?)");
    }
  }

  [[noreturn]] void fail(const std::string& what) const {
    char op[8];
    std::snprintf(op, sizeof(op), "0x%02x", op_);
    std::string printable = (op_ >= 0x20 && op_ < 0x7f) ? std::string(" '") + static_cast<char>(op_) + "'" : "";
    throw Error("pickle " + source_ + ": " + what + " (opcode " + op + printable + " at byte offset " +
                std::to_string(op_pos_) + ")");
  }

  // --- reading the byte stream
  void need(uint64_t n) const {
    if (n > size_ - pos_) {
      fail("truncated: needs " + std::to_string(n) + " more bytes, only " + std::to_string(size_ - pos_) + " left");
    }
  }
  uint64_t read_le(int n) {
    need(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | data_[pos_ + i];
    pos_ += n;
    return v;
  }
  std::string read_bytes(uint64_t n) {
    need(n);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  std::string read_line() {
    const void* nl = std::memchr(data_ + pos_, '\n', size_ - pos_);
    if (!nl) fail("truncated: no newline after a text argument");
    const size_t end = static_cast<const uint8_t*>(nl) - data_;
    std::string s(reinterpret_cast<const char*>(data_ + pos_), end - pos_);
    pos_ = end + 1;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    return s;
  }
  double read_f64_be() {
    need(8);
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | data_[pos_ + i];
    pos_ += 8;
    double d;
    std::memcpy(&d, &bits, sizeof(d));
    return d;
  }
  int64_t parse_decimal(const std::string& text) {
    std::string t = text;
    if (!t.empty() && t.back() == 'L') t.pop_back();
    if (t == "00") return 0;  // protocol 0 writes False as I00 and True as I01
    if (t == "01") return 1;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(t.c_str(), &end, 10);
    if (t.empty() || *end != '\0' || errno == ERANGE) fail("bad or oversized integer literal '" + text + "'");
    return v;
  }

  // --- stack
  PickleValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    PickleValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PickleValuePtr& top() {
    if (stack_.empty()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<PickleValuePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t mark = marks_.back();
    marks_.pop_back();
    charge(stack_.size() - mark);
    std::vector<PickleValuePtr> items(std::make_move_iterator(stack_.begin() + mark),
                                      std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }
  void push(PickleValuePtr v) { stack_.push_back(std::move(v)); }

  // --- values
  PickleValuePtr make_tuple(std::vector<PickleValuePtr> items) {
    auto v = PickleValue::make(Kind::kTuple);
    v->items = std::move(items);
    return v;
  }
  int64_t as_int(const PickleValuePtr& v, const char* what) {
    if (!v || (v->kind != Kind::kInt && v->kind != Kind::kBool)) {
      fail(std::string(what) + ": got " + (v ? v->describe() : "nothing") + ", expected an int");
    }
    return v->kind == Kind::kBool ? v->boolean : v->integer;
  }
  std::vector<int64_t> as_int_tuple(const PickleValuePtr& v, const char* what) {
    if (!v || (v->kind != Kind::kTuple && v->kind != Kind::kList)) {
      fail(std::string(what) + ": got " + (v ? v->describe() : "nothing") + ", expected a tuple of ints");
    }
    std::vector<int64_t> out;
    for (const auto& item : v->items) out.push_back(as_int(item, what));
    return out;
  }
  void append_to(const PickleValuePtr& target, std::vector<PickleValuePtr> items) {
    if (target->kind == Kind::kList || target->kind == Kind::kObject) {
      for (auto& item : items) target->items.push_back(std::move(item));
    } else {
      fail("APPEND(S)/ADDITEMS on a " + target->describe() + ", expected a list");
    }
  }
  void set_items(const PickleValuePtr& target, std::vector<PickleValuePtr> kv) {
    if (kv.size() % 2) fail("SETITEMS with an odd number of stack items");
    if (target->kind != Kind::kDict && target->kind != Kind::kObject) {
      fail("SETITEM(S) on a " + target->describe() + ", expected a dict");
    }
    for (size_t i = 0; i < kv.size(); i += 2) target->entries.emplace_back(std::move(kv[i]), std::move(kv[i + 1]));
  }

  PickleValuePtr resolve_global(const std::string& module, const std::string& name);
  // Opcode groups of run(): each handles op_ and returns true, or returns false when op_ is not its own.
  bool control_op();
  bool number_op();
  bool string_op();
  bool container_op();
  bool memo_op();
  bool object_op();
  PickleValuePtr call(const PickleValuePtr& callable, const PickleValuePtr& args, const char* how);
  PickleValuePtr rebuild_tensor(const std::vector<PickleValuePtr>& a, const std::string& function);
  PickleValuePtr persistent(const PickleValuePtr& pid);

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  uint8_t op_ = 0;
  std::string source_;
  const PersistentLoad& persistent_load_;
  std::vector<PickleValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleValuePtr> memo_;
  std::vector<std::string> skipped_;
  std::set<std::string> skipped_set_;
  int call_depth_ = 0;
  uint64_t work_ = 0;
  // Real checkpoints cost about one step per byte or less (a tensor is ~60 bytes of pickle, ~20 steps).
  uint64_t work_limit_ = 64 * static_cast<uint64_t>(size_) + 10'000'000;
};

PickleValuePtr Machine::resolve_global(const std::string& module, const std::string& name) {
  auto v = PickleValue::make(Kind::kGlobal);
  v->text = module + "." + name;
  if (!is_known_global(v->text) && skipped_set_.insert(v->text).second) skipped_.push_back(v->text);
  return v;
}

PickleValuePtr Machine::rebuild_tensor(const std::vector<PickleValuePtr>& a, const std::string& function) {
  const bool v3 = function == "torch._utils._rebuild_tensor_v3";
  if (a.size() < (v3 ? 7u : 4u)) fail(function + " with " + std::to_string(a.size()) + " arguments");
  const PickleValuePtr& storage = a[0];
  if (!storage || storage->kind != Kind::kStorage) {
    fail(function + ": first argument got " + (storage ? storage->describe() : "nothing") + ", expected a storage");
  }
  at::ScalarType dtype = storage->storage_dtype;
  if (v3) {
    std::optional<at::ScalarType> d;
    if (a[6] && a[6]->kind == Kind::kGlobal) d = torch_dtype(a[6]->text);
    if (!d) fail(function + ": dtype argument got " + (a[6] ? a[6]->describe() : "nothing") + ", expected a torch dtype");
    dtype = *d;
  }
  const int64_t offset = as_int(a[1], "tensor storage offset");
  const std::vector<int64_t> sizes = as_int_tuple(a[2], "tensor size");
  const std::vector<int64_t> strides = as_int_tuple(a[3], "tensor stride");
  if (sizes.size() != strides.size()) {
    fail(function + ": size " + shape_str(sizes) + " and stride " + shape_str(strides) + " differ in length");
  }
  // The view must lie inside the storage: at::Tensor::set_ would otherwise grow the storage.
  const uint64_t element = c10::elementSize(dtype);
  const uint64_t storage_elements = storage->storage.nbytes() / element;
  bool empty = false;
  uint64_t last = offset < 0 ? 0 : static_cast<uint64_t>(offset);
  bool bad = offset < 0;
  for (size_t i = 0; i < sizes.size() && !bad; ++i) {
    if (sizes[i] < 0 || strides[i] < 0) bad = true;
    if (sizes[i] == 0) empty = true;
  }
  for (size_t i = 0; i < sizes.size() && !bad && !empty; ++i) {
    uint64_t reach = 0;
    if (c10::mul_overflows(static_cast<uint64_t>(sizes[i] - 1), static_cast<uint64_t>(strides[i]), &reach) ||
        c10::add_overflows(last, reach, &last)) {
      bad = true;
    }
  }
  if (bad || (empty ? last > storage_elements : last >= storage_elements)) {
    fail(function + ": view with offset " + std::to_string(offset) + ", size " + shape_str(sizes) + ", stride " +
         shape_str(strides) + " does not fit its storage of " + std::to_string(storage_elements) + " " +
         c10::toString(dtype) + " elements");
  }
  auto v = PickleValue::make(Kind::kTensor);
  v->tensor = at::empty({0}, at::TensorOptions().dtype(dtype).device(at::kCPU))
                  .set_(storage->storage, offset, sizes, strides);
  return v;
}

// One branch per callable of the whitelist, kept together (82 lines) so that everything a pickle can make
// this reader build is read in one place.
PickleValuePtr Machine::call(const PickleValuePtr& callable, const PickleValuePtr& args, const char* how) {
  if (!callable || callable->kind != Kind::kGlobal) {
    fail(std::string(how) + " calls a " + (callable ? callable->describe() : "nothing") + ", expected a class or function");
  }
  if (!args || args->kind != Kind::kTuple) {
    fail(std::string(how) + " of " + callable->text + ": arguments got " + (args ? args->describe() : "nothing") +
         ", expected a tuple");
  }
  const std::string& f = callable->text;
  const auto& a = args->items;
  if (!is_known_global(f)) {
    // Never called: recorded as an inert object (the name was reported when GLOBAL resolved it).
    auto object = PickleValue::make(Kind::kObject);
    object->text = f;
    object->args = args;
    return object;
  }
  if (f == "torch._utils._rebuild_tensor" || f == "torch._utils._rebuild_tensor_v2" ||
      f == "torch._utils._rebuild_tensor_v3") {
    return rebuild_tensor(a, f);
  }
  if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
    if (a.empty() || !a[0] || a[0]->kind != Kind::kTensor) fail(f + ": first argument is not a tensor");
    return a[0];
  }
  if (f == "torch._tensor._rebuild_from_type_v2") {
    // (func, new_type, args, state): a tensor subclass; rebuild the plain tensor with func(*args).
    if (a.size() < 3) fail(f + " with " + std::to_string(a.size()) + " arguments");
    if (++call_depth_ > 8) fail(f + " nested too deeply");
    auto rebuilt = call(a[0], a[2], how);
    --call_depth_;
    return rebuilt;
  }
  if (f == "collections.OrderedDict") {
    auto dict = PickleValue::make(Kind::kDict);
    if (!a.empty() && a[0] && (a[0]->kind == Kind::kList || a[0]->kind == Kind::kTuple)) {
      charge(a[0]->items.size());
      for (const auto& pair : a[0]->items) {
        if (pair && pair->kind == Kind::kTuple && pair->items.size() == 2) {
          dict->entries.emplace_back(pair->items[0], pair->items[1]);
        }
      }
    }
    return dict;
  }
  if (f == "torch.device") {
    if (a.empty() || !a[0] || a[0]->kind != Kind::kString) fail("torch.device without a device name");
    std::string device = a[0]->text;
    if (a.size() > 1 && a[1] && a[1]->kind == Kind::kInt) device += ":" + std::to_string(a[1]->integer);
    return PickleValue::make_string(device);
  }
  if (f == "_codecs.encode") {
    if (a.empty() || !a[0] || a[0]->kind != Kind::kString) fail("_codecs.encode without a string");
    auto bytes = utf8_to_latin1(a[0]->text);
    if (!bytes) fail("_codecs.encode of text outside latin-1");
    auto v = PickleValue::make(Kind::kBytes);
    v->text = *bytes;
    return v;
  }
  if (f == "torch.jit._pickle.restore_type_tag") {
    if (a.empty()) fail(f + " without arguments");
    return a[0];
  }
  static const std::set<std::string> kListLike = {
      "torch.Size", "builtins.set", "__builtin__.set", "builtins.frozenset", "__builtin__.frozenset",
      "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
      "torch.jit._pickle.build_tensorlist", "torch.jit._pickle.build_genericlist"};
  if (kListLike.count(f)) {
    // torch.Size(tuple) -> tuple; set(list) -> list; build_*list(list) -> list.
    auto v = PickleValue::make(f == "torch.Size" ? Kind::kTuple : Kind::kList);
    if (!a.empty() && a[0] && (a[0]->kind == Kind::kList || a[0]->kind == Kind::kTuple)) {
      charge(a[0]->items.size());
      v->items = a[0]->items;
    }
    return v;
  }
  // A whitelisted tag (storage type, dtype, torch.Tensor) being called: keep it inert too.
  auto object = PickleValue::make(Kind::kObject);
  object->text = f;
  object->args = args;
  return object;
}

PickleValuePtr Machine::persistent(const PickleValuePtr& pid) {
  if (!persistent_load_) fail("persistent id in a pickle that allows none");
  PickleValuePtr v = persistent_load_(*pid);
  if (!v) fail("persistent id was not resolved");
  return v;
}

// Framing and control: false when op_ is not one of them.
bool Machine::control_op() {
  switch (op_) {
    case 0x80: {  // PROTO
      const uint64_t proto = read_le(1);
      if (proto > 5) fail("unsupported pickle protocol " + std::to_string(proto));
      break;
    }
    case 0x95: read_le(8); break;  // FRAME: length hint only
    case '(': marks_.push_back(stack_.size()); break;  // MARK
    case '0': pop(); break;                            // POP
    case '1': pop_mark(); break;                       // POP_MARK
    case '2': push(top()); break;                      // DUP
    default:
      return false;
  }
  return true;
}

// Constants and numbers: false when op_ is not one of them.
bool Machine::number_op() {
  switch (op_) {
    case 'N': push(PickleValue::make(Kind::kNone)); break;
    case 0x88:
    case 0x89: {  // NEWTRUE / NEWFALSE
      auto v = PickleValue::make(Kind::kBool);
      v->boolean = op_ == 0x88;
      push(v);
      break;
    }
    case 'J': push(PickleValue::make_int(static_cast<int32_t>(read_le(4)))); break;  // BININT
    case 'K': push(PickleValue::make_int(static_cast<int64_t>(read_le(1)))); break;  // BININT1
    case 'M': push(PickleValue::make_int(static_cast<int64_t>(read_le(2)))); break;  // BININT2
    case 0x8a:
    case 0x8b: {  // LONG1 / LONG4: little-endian two's complement of n bytes
      const uint64_t n = read_le(op_ == 0x8a ? 1 : 4);
      need(n);
      const uint8_t* p = data_ + pos_;
      pos_ += n;
      const bool negative = n > 0 && (p[n - 1] & 0x80);
      for (uint64_t i = 8; i < n; ++i) {
        if (p[i] != (negative ? 0xFF : 0x00)) fail("integer of " + std::to_string(n) + " bytes does not fit 64 bits");
      }
      uint64_t v = negative ? ~uint64_t{0} : 0;
      for (uint64_t i = 0; i < std::min<uint64_t>(n, 8); ++i) {
        v &= ~(uint64_t{0xFF} << (8 * i));
        v |= uint64_t{p[i]} << (8 * i);
      }
      push(PickleValue::make_int(static_cast<int64_t>(v)));
      break;
    }
    case 'I': {  // INT (text); I00/I01 are False/True
      const std::string line = read_line();
      if (line == "00" || line == "01") {
        auto v = PickleValue::make(Kind::kBool);
        v->boolean = line == "01";
        push(v);
      } else {
        push(PickleValue::make_int(parse_decimal(line)));
      }
      break;
    }
    case 'L': push(PickleValue::make_int(parse_decimal(read_line()))); break;  // LONG (text)
    case 'G': {                                                               // BINFLOAT (big-endian)
      auto v = PickleValue::make(Kind::kFloat);
      v->real = read_f64_be();
      push(v);
      break;
    }
    case 'F': {  // FLOAT (text)
      const std::string line = read_line();
      char* end = nullptr;
      auto v = PickleValue::make(Kind::kFloat);
      v->real = std::strtod(line.c_str(), &end);
      if (line.empty() || *end != '\0') fail("bad float literal '" + line + "'");
      push(v);
      break;
    }
    default:
      return false;
  }
  return true;
}

// Strings and bytes: false when op_ is not one of them.
bool Machine::string_op() {
  switch (op_) {
    case 'X': push(PickleValue::make_string(read_bytes(read_le(4)))); break;     // BINUNICODE
    case 0x8c: push(PickleValue::make_string(read_bytes(read_le(1)))); break;    // SHORT_BINUNICODE
    case 0x8d: push(PickleValue::make_string(read_bytes(read_le(8)))); break;    // BINUNICODE8
    case 'T': push(PickleValue::make_string(read_bytes(read_le(4)))); break;     // BINSTRING (py2 str)
    case 'U': push(PickleValue::make_string(read_bytes(read_le(1)))); break;     // SHORT_BINSTRING
    case 'V': push(PickleValue::make_string(raw_unicode_escape_to_utf8(read_line()))); break;  // UNICODE
    case 'S': {                                                                  // STRING (quoted repr)
      std::string line = read_line();
      if (line.size() >= 2 && (line.front() == '\'' || line.front() == '"') && line.back() == line.front()) {
        line = line.substr(1, line.size() - 2);
      }
      push(PickleValue::make_string(line));
      break;
    }
    case 'B':
    case 'C':
    case 0x8e:
    case 0x96: {  // BINBYTES / SHORT_BINBYTES / BINBYTES8 / BYTEARRAY8
      const int width = op_ == 'B' ? 4 : op_ == 'C' ? 1 : 8;
      auto v = PickleValue::make(Kind::kBytes);
      v->text = read_bytes(read_le(width));
      push(v);
      break;
    }
    default:
      return false;
  }
  return true;
}

// Containers: false when op_ is not one of them.
bool Machine::container_op() {
  switch (op_) {
    case '}': push(PickleValue::make(Kind::kDict)); break;   // EMPTY_DICT
    case ']': push(PickleValue::make(Kind::kList)); break;   // EMPTY_LIST
    case ')': push(make_tuple({})); break;                   // EMPTY_TUPLE
    case 0x8f: push(PickleValue::make(Kind::kList)); break;  // EMPTY_SET (kept as a list)
    case 't': push(make_tuple(pop_mark())); break;           // TUPLE
    case 0x85:
    case 0x86:
    case 0x87: {  // TUPLE1..3
      const size_t n = op_ - 0x84;
      std::vector<PickleValuePtr> items(n);
      for (size_t i = n; i-- > 0;) items[i] = pop();
      push(make_tuple(std::move(items)));
      break;
    }
    case 'l': {  // LIST
      auto v = PickleValue::make(Kind::kList);
      v->items = pop_mark();
      push(v);
      break;
    }
    case 0x91: {  // FROZENSET
      auto v = PickleValue::make(Kind::kList);
      v->items = pop_mark();
      push(v);
      break;
    }
    case 'd': {  // DICT
      auto v = PickleValue::make(Kind::kDict);
      set_items(v, pop_mark());
      push(v);
      break;
    }
    case 'a': {  // APPEND
      auto item = pop();
      append_to(top(), {std::move(item)});
      break;
    }
    case 'e':      // APPENDS
    case 0x90: {   // ADDITEMS
      auto items = pop_mark();
      append_to(top(), std::move(items));
      break;
    }
    case 's': {  // SETITEM
      auto value = pop();
      auto key = pop();
      set_items(top(), {std::move(key), std::move(value)});
      break;
    }
    case 'u': {  // SETITEMS
      auto kv = pop_mark();
      set_items(top(), std::move(kv));
      break;
    }
    default:
      return false;
  }
  return true;
}

// Memo: false when op_ is not one of them.
bool Machine::memo_op() {
  switch (op_) {
    case 'q': memo_[read_le(1)] = top(); break;  // BINPUT
    case 'r': memo_[read_le(4)] = top(); break;  // LONG_BINPUT
    case 'p': memo_[static_cast<uint64_t>(parse_decimal(read_line()))] = top(); break;  // PUT
    case 0x94: {                                                                       // MEMOIZE
      const uint64_t index = memo_.size();
      memo_[index] = top();
      break;
    }
    case 'h':
    case 'j':
    case 'g': {  // BINGET / LONG_BINGET / GET
      const uint64_t index = op_ == 'h' ? read_le(1) : op_ == 'j' ? read_le(4)
                                                                  : static_cast<uint64_t>(parse_decimal(read_line()));
      auto it = memo_.find(index);
      if (it == memo_.end()) fail("memo index " + std::to_string(index) + " was never stored");
      push(it->second);
      break;
    }
    default:
      return false;
  }
  return true;
}

// Globals, calls and objects (never executed): false when op_ is not one of them.
bool Machine::object_op() {
  switch (op_) {
    case 'c': {  // GLOBAL "module\nname\n"
      std::string module = read_line();
      std::string name = read_line();
      push(resolve_global(module, name));
      break;
    }
    case 0x93: {  // STACK_GLOBAL
      auto name = pop();
      auto module = pop();
      if (!module->is_string() || !name->is_string()) fail("STACK_GLOBAL needs two strings");
      push(resolve_global(module->text, name->text));
      break;
    }
    case 'R': {  // REDUCE
      auto args = pop();
      auto callable = pop();
      push(call(callable, args, "REDUCE"));
      break;
    }
    case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
      auto args = pop();
      auto cls = pop();
      push(call(cls, args, "NEWOBJ"));
      break;
    }
    case 0x92: {  // NEWOBJ_EX: keyword arguments are dropped
      pop();
      auto args = pop();
      auto cls = pop();
      push(call(cls, args, "NEWOBJ_EX"));
      break;
    }
    case 'i': {  // INST "module\nname\n" over marked args (protocol 0)
      std::string module = read_line();
      std::string name = read_line();
      auto args = make_tuple(pop_mark());
      push(call(resolve_global(module, name), args, "INST"));
      break;
    }
    case 'o': {  // OBJ: cls and args after MARK (protocol 1)
      auto items = pop_mark();
      if (items.empty()) fail("OBJ without a class");
      auto cls = items.front();
      items.erase(items.begin());
      push(call(cls, make_tuple(std::move(items)), "OBJ"));
      break;
    }
    case 'b': {  // BUILD: remember the state, never call __setstate__
      auto state = pop();
      auto& target = top();
      if (state.get() == target.get()) break;  // an object built with itself: nothing to add (and no cycle)
      if (target->kind == Kind::kObject) {
        target->state = std::move(state);
      } else if (target->kind == Kind::kDict && state->kind == Kind::kDict) {
        charge(state->entries.size());
        const auto entries = state->entries;  // a copy: state's vector may be target's (shared through the memo)
        target->entries.insert(target->entries.end(), entries.begin(), entries.end());
      }
      // A tensor's BUILD state (Python attributes of a Parameter) carries no data: dropped.
      break;
    }
    case 'Q': {  // BINPERSID
      auto pid = pop();
      push(persistent(pid));
      break;
    }
    case 'P': {  // PERSID (text id)
      push(persistent(PickleValue::make_string(read_line())));
      break;
    }
    default:
      return false;
  }
  return true;
}

// The interpreter: one opcode at a time, by group (each group's function says whether op_ was one of its
// opcodes), until STOP.
PickleResult Machine::run() {
  while (true) {
    if (pos_ >= size_) {
      op_pos_ = pos_;
      op_ = 0;
      fail("truncated: end of data before STOP");
    }
    op_pos_ = pos_;
    op_ = data_[pos_++];
    charge(1);
    if (op_ == '.') {  // STOP
      PickleResult result;
      result.value = pop();
      result.skipped_classes = std::move(skipped_);
      return result;
    }
    if (control_op() || number_op() || string_op() || container_op() || memo_op() || object_op()) continue;
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", op_);
    fail(std::string("unknown or unsupported opcode ") + hex);
  }
}

}  // namespace

// [SECTION] entry point ------------------------------------------------------------------------------

PickleResult read_pickle(const uint8_t* data, size_t size, const std::string& source,
                         const PersistentLoad& persistent_load) {
  Machine machine(data, size, source, persistent_load);
  return machine.run();
}

}  // namespace clipguide
