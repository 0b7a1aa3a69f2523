// Whole-file reads into LibTorch-allocated buffers and atomic writes (temporary file + rename).
#include "core/io/file_util.h"

#include "core/error.h"

#include <c10/core/CPUAllocator.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <system_error>

#include <unistd.h>

namespace clipguide::io {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

namespace {
void require_regular_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error("'" + path.string() + "' is a directory, expected a file");
}
}  // namespace

FileBuffer read_file(const std::filesystem::path& path) {
  require_regular_file(path);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error("cannot open '" + path.string() + "': " + errno_text());
  const std::streamoff end = in.tellg();
  if (end < 0) throw Error("cannot read the size of '" + path.string() + "'");
  FileBuffer buffer;
  buffer.size = static_cast<size_t>(end);
  // Allocate at least one byte so data->get() is never null, even for an empty file.
  buffer.data = std::make_shared<c10::DataPtr>(c10::GetCPUAllocator()->allocate(std::max<size_t>(buffer.size, 1)));
  in.seekg(0);
  if (buffer.size > 0 && !in.read(static_cast<char*>(buffer.data->get()), static_cast<std::streamsize>(buffer.size))) {
    throw Error("cannot read " + std::to_string(buffer.size) + " bytes from '" + path.string() + "'");
  }
  return buffer;
}

std::string read_file_prefix(const std::filesystem::path& path, size_t n) {
  require_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path.string() + "': " + errno_text());
  std::string out(n, '\0');
  in.read(out.data(), static_cast<std::streamsize>(n));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

AtomicFile::AtomicFile(const std::filesystem::path& path) : path_(path) {
  std::random_device rd;
  static const char kHex[] = "0123456789abcdef";
  std::string suffix = ".tmp-";
  for (int i = 0; i < 8; ++i) suffix += kHex[rd() % 16];
  tmp_path_ = path;
  tmp_path_ += suffix;
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) throw Error("cannot create '" + tmp_path_.string() + "' (to write '" + path.string() + "'): " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::error_code ignored;
    std::filesystem::remove(tmp_path_, ignored);
  }
}

void AtomicFile::write(const void* data, size_t n) {
  if (!file_) throw Error("'" + path_.string() + "': write after commit");
  if (n > 0 && std::fwrite(data, 1, n, file_) != n) {
    throw Error("cannot write " + std::to_string(n) + " bytes to '" + tmp_path_.string() + "': " + errno_text());
  }
}

void AtomicFile::commit() {
  if (!file_) throw Error("'" + path_.string() + "': committed twice");
  // fsync before rename: after a crash the name points at either the old file or the whole new one.
  const bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  std::error_code ec;
  if (!flushed || !closed) {
    std::filesystem::remove(tmp_path_, ec);
    throw Error("cannot finish writing '" + tmp_path_.string() + "': " + errno_text());
  }
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp_path_, ignored);
    throw Error("cannot rename '" + tmp_path_.string() + "' to '" + path_.string() + "': " + ec.message());
  }
}

}  // namespace clipguide::io
