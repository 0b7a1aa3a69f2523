// .npy reader/writer for the dtypes clipguide exchanges with Python.
// ref: numpy@v1.26.0 numpy/lib/format.py (magic, header padding to 64 bytes, versions 1.0-3.0)
#include "core/io/npy.h"

#include "core/error.h"
#include "core/io/file_util.h"

#include <ATen/ops/empty.h>
#include <c10/util/safe_numerics.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

namespace clipguide {

namespace {

struct NpyDtype {
  const char* descr;
  at::ScalarType type;
};

constexpr NpyDtype kNpyDtypes[] = {
    {"<f4", at::kFloat}, {"<f8", at::kDouble}, {"<f2", at::kHalf}, {"<i8", at::kLong},
    {"<i4", at::kInt},   {"|u1", at::kByte},   {"|b1", at::kBool},
};

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr size_t kMaxHeader = 1 << 20;

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error("npy file '" + path.string() + "': " + what);
}

// The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// A tiny scanner for those three keys, not a general literal parser.
struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

Header parse_header(const std::filesystem::path& path, const std::string& text) {
  auto value_after = [&](const std::string& key) -> size_t {
    size_t k = text.find("'" + key + "'");
    if (k == std::string::npos) k = text.find("\"" + key + "\"");
    if (k == std::string::npos) fail(path, "header has no '" + key + "': " + text);
    size_t colon = text.find(':', k);
    if (colon == std::string::npos) fail(path, "header is malformed: " + text);
    size_t v = text.find_first_not_of(' ', colon + 1);
    if (v == std::string::npos) fail(path, "header is malformed: " + text);
    return v;
  };
  Header h;
  size_t d = value_after("descr");
  const char quote = text[d];
  if (quote != '\'' && quote != '"') fail(path, "descr is not a string (structured dtypes are not supported): " + text);
  const size_t end = text.find(quote, d + 1);
  if (end == std::string::npos) fail(path, "header is malformed: " + text);
  h.descr = text.substr(d + 1, end - d - 1);

  size_t f = value_after("fortran_order");
  if (text.compare(f, 4, "True") == 0) {
    h.fortran_order = true;
  } else if (text.compare(f, 5, "False") != 0) {
    fail(path, "fortran_order is neither True nor False: " + text);
  }

  size_t s = value_after("shape");
  if (text[s] != '(') fail(path, "shape is not a tuple: " + text);
  const size_t close = text.find(')', s);
  if (close == std::string::npos) fail(path, "header is malformed: " + text);
  const std::string dims = text.substr(s + 1, close - s - 1);
  size_t i = 0;
  while (i < dims.size()) {
    while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
    if (i >= dims.size()) break;
    size_t j = i;
    while (j < dims.size() && dims[j] >= '0' && dims[j] <= '9') ++j;
    if (j == i || j - i > 18) fail(path, "shape " + text.substr(s, close - s + 1) + " holds a non-integer or huge dimension");
    h.shape.push_back(std::stoll(dims.substr(i, j - i)));
    i = j;
  }
  return h;
}

std::optional<at::ScalarType> dtype_of(const std::string& descr) {
  for (const auto& d : kNpyDtypes) {
    if (descr == d.descr) return d.type;
  }
  // numpy writes "<u1"/"|i1"-style variants for single bytes on some paths; accept the byte-order-free ones.
  if (descr == "<u1" || descr == ">u1") return at::kByte;
  if (descr == "<b1" || descr == ">b1") return at::kBool;
  return std::nullopt;
}

}  // namespace

void write_npy(const std::filesystem::path& path, const at::Tensor& tensor) {
  if (!tensor.defined()) throw Error("write_npy '" + path.string() + "': undefined tensor");
  const char* descr = nullptr;
  for (const auto& d : kNpyDtypes) {
    if (tensor.scalar_type() == d.type) descr = d.descr;
  }
  if (!descr) {
    throw Error("write_npy '" + path.string() + "': dtype " + std::string(c10::toString(tensor.scalar_type())) +
                " is not supported, expected one of float32 float64 float16 int64 int32 uint8 bool");
  }
  at::Tensor c = tensor.detach().cpu().contiguous();
  std::string shape;
  for (int64_t dim : c.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(dim);
  shape = "(" + shape + (c.dim() == 1 ? ",)" : ")");  // "()", "(5,)", "(2, 3)" as Python writes tuples
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Version 1.0 (2-byte header length; LibTorch's at most 64 dims always fit). Pad with spaces and a
  // newline so the data starts 64-byte aligned, as numpy does.
  const size_t fixed = kMagicSize + 2 + 2;
  header.append((64 - (fixed + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string prefix(kMagic, kMagicSize);
  prefix += '\x01';
  prefix += '\x00';
  prefix += static_cast<char>(header.size() & 0xFF);
  prefix += static_cast<char>((header.size() >> 8) & 0xFF);
  io::AtomicFile file(path);
  file.write(prefix);
  file.write(header);
  file.write(c.data_ptr(), c.nbytes());
  file.commit();
}

at::Tensor read_npy(const std::filesystem::path& path) {
  io::FileBuffer buffer = io::read_file(path);
  const uint8_t* b = buffer.bytes();
  if (buffer.size < kMagicSize + 4 || std::memcmp(b, kMagic, kMagicSize) != 0) {
    fail(path, "no \\x93NUMPY magic: not a .npy file");
  }
  const uint8_t major = b[6];
  size_t header_len = 0;
  size_t header_start = 0;
  if (major == 1) {
    header_len = b[8] | (b[9] << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (buffer.size < 12) fail(path, "truncated header");
    header_len = b[8] | (b[9] << 8) | (b[10] << 16) | (static_cast<size_t>(b[11]) << 24);
    header_start = 12;
  } else {
    fail(path, "format version " + std::to_string(major) + "." + std::to_string(b[7]) + " is not supported (1.0-3.0)");
  }
  if (header_len > kMaxHeader || header_start + header_len > buffer.size) {
    fail(path, "header length got " + std::to_string(header_len) + " bytes, but the file has " +
                   std::to_string(buffer.size - header_start) + " after the prefix (truncated?)");
  }
  const Header h = parse_header(path, std::string(reinterpret_cast<const char*>(b + header_start), header_len));
  const auto dtype = dtype_of(h.descr);
  if (!dtype) {
    fail(path, "dtype '" + h.descr + "' is not supported, expected one of <f4 <f8 <f2 <i8 <i4 |u1 |b1 (little-endian)");
  }
  uint64_t nbytes = c10::elementSize(*dtype);
  for (int64_t dim : h.shape) {
    if (c10::mul_overflows(nbytes, static_cast<uint64_t>(dim), &nbytes)) fail(path, "shape overflows");
  }
  const uint64_t data_start = header_start + header_len;
  if (buffer.size - data_start != nbytes) {
    fail(path, "data got " + std::to_string(buffer.size - data_start) + " bytes, expected " + std::to_string(nbytes) +
                   " (shape " + shape_str(h.shape) + ", " + h.descr + ")");
  }
  std::vector<int64_t> stored_shape = h.shape;
  if (h.fortran_order) std::reverse(stored_shape.begin(), stored_shape.end());
  at::Tensor t = at::empty(stored_shape, at::TensorOptions().dtype(*dtype));
  if (nbytes > 0) std::memcpy(t.data_ptr(), b + data_start, nbytes);
  if (h.fortran_order && t.dim() > 1) {
    // Fortran order is C order of the reversed shape: transpose back and make it C-contiguous.
    std::vector<int64_t> dims(t.dim());
    for (int64_t i = 0; i < t.dim(); ++i) dims[i] = t.dim() - 1 - i;
    t = t.permute(dims).contiguous();
  }
  return t;
}

}  // namespace clipguide
