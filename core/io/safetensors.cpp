// safetensors reader/writer. Validation rules follow the reference package
// (ref: huggingface/safetensors safetensors/src/tensor.rs, Metadata::validate): header size bound,
// a JSON object header, string->string __metadata__, offsets sorted, contiguous from 0, no holes or
// overlaps, ending exactly at the end of the file, byte count == numel x dtype size.
#include "core/io/safetensors.h"

#include "core/error.h"
#include "core/io/file_util.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/safe_numerics.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

namespace clipguide {

namespace {

using nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";

struct DtypeName {
  const char* name;
  at::ScalarType type;
};

// Every safetensors dtype with a LibTorch equivalent (all present since LibTorch 2.3).
// Not supported here: F8_E8M0, F4, F6_* (no stable LibTorch dtype across 2.4+): a clear error.
constexpr DtypeName kDtypes[] = {
    {"F64", at::kDouble},          {"F32", at::kFloat},
    {"F16", at::kHalf},            {"BF16", at::kBFloat16},
    {"I64", at::kLong},            {"I32", at::kInt},
    {"I16", at::kShort},           {"I8", at::kChar},
    {"U8", at::kByte},             {"BOOL", at::kBool},
    {"U16", at::kUInt16},          {"U32", at::kUInt32},
    {"U64", at::kUInt64},          {"C64", at::kComplexFloat},
    {"F8_E4M3", at::kFloat8_e4m3fn}, {"F8_E5M2", at::kFloat8_e5m2},
    {"F8_E4M3FNUZ", at::kFloat8_e4m3fnuz}, {"F8_E5M2FNUZ", at::kFloat8_e5m2fnuz},
};

std::string known_dtypes() {
  std::string out;
  for (const auto& d : kDtypes) out += std::string(out.empty() ? "" : " ") + d.name;
  return out;
}

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error("safetensors file '" + path.string() + "': " + what);
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct Entry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// A safetensors header nests 3 levels at most ({"name": {"shape": [..]}}); a hostile one nesting thousands
// deep would make the JSON library recurse until the stack overflows. Checked on the text before parsing:
// brackets outside strings.
void check_nesting(const std::filesystem::path& path, const std::string& text) {
  constexpr int kMaxDepth = 3;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) {
        fail(path, "header nests JSON deeper than " + std::to_string(kMaxDepth) + " levels at byte " + std::to_string(8 + i) +
                       " (a safetensors header is an object of entries holding flat arrays: corrupt or hostile file)");
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

// Finds the first duplicate key at depth 1 (tensor names) or 2 (an entry's fields), in one linear SAX pass.
// (A parse callback would do it too, but nlohmann's callback parser rescans an object's members at its end:
// quadratic in the number of tensors, minutes for a header of 200,000 entries.)
class DuplicateKeys : public nlohmann::json_sax<json> {
 public:
  std::string duplicate;  // "'name'" or "'field' (inside an entry)"; empty when none

  bool key(string_t& key) override {
    if (depth_ == 1) {
      inner_.clear();
      if (!top_.insert(key).second && duplicate.empty()) duplicate = "'" + key + "'";
    } else if (depth_ == 2) {
      if (!inner_.insert(key).second && duplicate.empty()) duplicate = "'" + key + "' (inside an entry)";
    }
    return true;
  }
  bool start_object(std::size_t) override { return ++depth_, true; }
  bool end_object() override { return --depth_, true; }
  bool start_array(std::size_t) override { return ++depth_, true; }
  bool end_array() override { return --depth_, true; }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  int depth_ = 0;
  std::set<std::string> top_, inner_;
};

// Parses the header, rejecting duplicate keys (nlohmann would silently keep the last one).
json parse_header(const std::filesystem::path& path, const std::string& text) {
  check_nesting(path, text);
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid UTF-8 JSON: ") + e.what());
  }
  DuplicateKeys keys;
  json::sax_parse(text, &keys);
  if (!keys.duplicate.empty()) fail(path, "duplicate key " + keys.duplicate + " in the header");
  return header;
}

std::string json_type(const json& j) { return j.type_name(); }

Entry parse_entry(const std::filesystem::path& path, const std::string& name, const json& value) {
  const std::string where = "tensor '" + name + "': ";
  if (!value.is_object()) fail(path, where + "entry is a JSON " + json_type(value) + ", expected an object");
  Entry entry;
  entry.name = name;

  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end() || !dtype_it->is_string()) fail(path, where + "missing string field \"dtype\"");
  auto dtype = safetensors_dtype_from_name(dtype_it->get<std::string>());
  if (!dtype) {
    fail(path, where + "unknown or unsupported dtype \"" + dtype_it->get<std::string>() + "\", expected one of " +
                   known_dtypes());
  }
  entry.dtype = *dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end() || !shape_it->is_array()) fail(path, where + "missing array field \"shape\"");
  for (const auto& dim : *shape_it) {
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      fail(path, where + "shape " + shape_it->dump() + " holds " + dim.dump() + ", expected non-negative integers");
    }
    entry.shape.push_back(dim.get<int64_t>());
  }

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    fail(path, where + "\"data_offsets\" got " + (offsets_it == value.end() ? std::string("nothing") : offsets_it->dump()) +
                   ", expected [begin, end] with non-negative integers");
  }
  entry.begin = (*offsets_it)[0].get<uint64_t>();
  entry.end = (*offsets_it)[1].get<uint64_t>();
  if (entry.end < entry.begin) {
    fail(path, where + "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
                   "] end before they begin");
  }

  // numel x element size, refusing overflow (a hostile shape must not wrap around to a small count).
  uint64_t nbytes = c10::elementSize(entry.dtype);
  for (int64_t dim : entry.shape) {
    if (c10::mul_overflows(nbytes, static_cast<uint64_t>(dim), &nbytes)) {
      fail(path, where + "shape " + shape_str(entry.shape) + " overflows 64-bit byte counts");
    }
  }
  const uint64_t span = entry.end - entry.begin;
  if (span != nbytes) {
    fail(path, where + "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "] got " +
                   std::to_string(span) + " bytes, expected " + std::to_string(nbytes) + " (shape " +
                   shape_str(entry.shape) + " x " + dtype_it->get<std::string>() + " of " +
                   std::to_string(c10::elementSize(entry.dtype)) + " bytes)");
  }
  return entry;
}

std::map<std::string, std::string> parse_metadata(const std::filesystem::path& path, const json& value) {
  if (!value.is_object()) fail(path, "__metadata__ is a JSON " + json_type(value) + ", expected an object of strings");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      fail(path, "__metadata__ key '" + key + "' got a JSON " + json_type(item) + " (" + item.dump() +
                     "), expected a string");
    }
    metadata[key] = item.get<std::string>();
  }
  return metadata;
}

}  // namespace

std::optional<at::ScalarType> safetensors_dtype_from_name(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  return std::nullopt;
}

std::optional<std::string> safetensors_dtype_name(at::ScalarType dtype) {
  for (const auto& d : kDtypes) {
    if (dtype == d.type) return std::string(d.name);
  }
  return std::nullopt;
}

namespace {

// The 8-byte little-endian header size, checked against the file: returns it.
uint64_t header_size_of(const std::filesystem::path& path, const io::FileBuffer& buffer) {
  const uint8_t* bytes = buffer.bytes();
  if (buffer.size < 8) {
    fail(path, "file is " + std::to_string(buffer.size) + " bytes, too short for the 8-byte header size");
  }
  const uint64_t header_size = read_le64(bytes);
  if (header_size > kSafetensorsMaxHeaderBytes) {
    fail(path, "header size got " + std::to_string(header_size) + " bytes, expected at most " +
                   std::to_string(kSafetensorsMaxHeaderBytes) + " (corrupt file, or not safetensors)");
  }
  if (header_size > buffer.size - 8) {
    fail(path, "header size got " + std::to_string(header_size) + " bytes, but the file has only " +
                   std::to_string(buffer.size - 8) + " bytes after the 8-byte size (truncated?)");
  }
  if (header_size == 0 || bytes[8] != '{') {
    fail(path, "header does not start with '{' (got byte " +
                   (header_size == 0 ? std::string("<none>") : std::to_string(bytes[8])) + "): not a safetensors file");
  }
  return header_size;
}

// The data section (data_size bytes) must be covered exactly once, in offset order: sorts `entries` so.
void check_coverage(const std::filesystem::path& path, std::vector<Entry>& entries, uint64_t data_size,
                    const std::string& sizes) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t expected_begin = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : entries) {
    if (entry.begin != expected_begin) {
      const std::string offsets = "[" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "]";
      const std::string after = previous ? "the end of tensor '" + previous->name + "'" : "the start of the data";
      fail(path, "tensor '" + entry.name + "': data_offsets " + offsets + " begin at byte " +
                     std::to_string(entry.begin) + ", expected " + std::to_string(expected_begin) + " (" + after +
                     "): " + (entry.begin < expected_begin ? "overlapping tensors" : "a hole in the data"));
    }
    expected_begin = entry.end;
    previous = &entry;
  }
  if (expected_begin != data_size) {
    fail(path, "tensor data ends at byte " + std::to_string(expected_begin) + " of the data section, but the data section is " +
                   std::to_string(data_size) + " bytes (" + sizes + ")" +
                   (expected_begin > data_size ? ": truncated file" : ": trailing bytes"));
  }
}

// The entry's tensor: a view of the file buffer when aligned (the reference writer aligns; the buffer stays
// alive as long as any tensor does), else a copy.
at::Tensor entry_tensor(const Entry& entry, const uint8_t* data, const std::shared_ptr<c10::DataPtr>& owner) {
  const auto options = at::TensorOptions().dtype(entry.dtype).device(at::kCPU);
  const uint8_t* src = data + entry.begin;
  const size_t nbytes = entry.end - entry.begin;
  if (nbytes == 0) return at::empty(entry.shape, options);
  if (reinterpret_cast<uintptr_t>(src) % c10::elementSize(entry.dtype) == 0) {
    return at::from_blob(const_cast<uint8_t*>(src), entry.shape, [owner](void*) {}, options);
  }
  at::Tensor tensor = at::empty(entry.shape, options);
  std::memcpy(tensor.data_ptr(), src, nbytes);
  return tensor;
}

}  // namespace

SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  io::FileBuffer buffer = io::read_file(path);
  const uint64_t header_size = header_size_of(path, buffer);
  const json header =
      parse_header(path, std::string(reinterpret_cast<const char*>(buffer.bytes() + 8), header_size));
  if (!header.is_object()) fail(path, "header is a JSON " + json_type(header) + ", expected an object");

  SafetensorsFile result;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      result.metadata = parse_metadata(path, value);
    } else {
      entries.push_back(parse_entry(path, key, value));
    }
  }
  const uint64_t data_start = 8 + header_size;
  check_coverage(path, entries, buffer.size - data_start,
                 "file " + std::to_string(buffer.size) + " bytes, header " + std::to_string(header_size));
  for (const Entry& entry : entries) {
    result.tensors.emplace(entry.name, entry_tensor(entry, buffer.bytes() + data_start, buffer.data));
  }
  return result;
}

void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::vector<at::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == kMetadataKey) {
      throw Error("write_safetensors '" + path.string() + "': invalid tensor name '" + name + "'");
    }
    if (!tensor.defined()) throw Error("write_safetensors '" + path.string() + "': tensor '" + name + "' is undefined");
    auto dtype = safetensors_dtype_name(tensor.scalar_type());
    if (!dtype) {
      throw Error("write_safetensors '" + path.string() + "': tensor '" + name + "' has dtype " +
                  std::string(c10::toString(tensor.scalar_type())) + ", which safetensors cannot store");
    }
    if (tensor.is_sparse() || tensor.is_quantized()) {
      throw Error("write_safetensors '" + path.string() + "': tensor '" + name + "' is not a dense tensor");
    }
    at::Tensor c = tensor.detach().cpu().contiguous();
    const uint64_t nbytes = c.nbytes();
    header[name] = {{"dtype", *dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(std::move(c));
  }
  std::string text;
  try {
    text = header.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception& e) {
    throw Error("write_safetensors '" + path.string() + "': a tensor name or metadata string is not valid UTF-8 (" +
                e.what() + ")");
  }
  // Pad with spaces (valid JSON whitespace) so the data starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t size_bytes[8];
  for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  io::AtomicFile file(path);
  file.write(size_bytes, 8);
  file.write(text);
  for (const at::Tensor& c : contiguous) file.write(c.data_ptr(), c.nbytes());
  file.commit();
}

}  // namespace clipguide
