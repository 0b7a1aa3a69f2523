// File helpers shared by the weight-file readers and writers: read a whole file into one aligned
// buffer, and write a file atomically (temporary name, then rename). Internal to core/io.
#pragma once

#include <c10/core/Allocator.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

namespace clipguide::io {

// A whole file in one 64-byte-aligned CPU buffer from LibTorch's allocator. Tensors may view it:
// they keep `data` alive through the deleter of at::from_blob.
struct FileBuffer {
  std::shared_ptr<c10::DataPtr> data;  // owns the bytes
  size_t size = 0;                     // bytes in the file
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(data->get()); }
};

// Reads all of `path` with one read. Throws clipguide::Error naming the file when it cannot.
FileBuffer read_file(const std::filesystem::path& path);

// Reads at most `n` bytes from the start of `path` (format detection).
std::string read_file_prefix(const std::filesystem::path& path, size_t n);

// Writes `<path>.tmp-XXXXXX` in the same folder and renames it over `path` on commit(), so readers
// never see a half-written file. Destroyed without commit() (an exception), it removes the temporary.
class AtomicFile {
 public:
  explicit AtomicFile(const std::filesystem::path& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // Flushes, fsyncs, closes and renames into place.
  void commit();

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  std::FILE* file_ = nullptr;
};

}  // namespace clipguide::io
