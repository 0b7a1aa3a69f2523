// Helpers for the core/io tests: compare a TensorMap bit for bit with a manifest written by
// tests/reference/weights_io.py (<file>.expected.json + raw C-order bytes), write raw files, run Python.
#pragma once

#include "core/error.h"
#include "core/io/tensor_map.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

namespace clipguide::test {

// torch's name for a dtype ("float32"), as weights_io.py writes it.
inline std::string torch_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    case at::kUInt16: return "uint16";
    case at::kUInt32: return "uint32";
    case at::kUInt64: return "uint64";
    case at::kComplexFloat: return "complex64";
    case at::kFloat8_e4m3fn: return "float8_e4m3fn";
    case at::kFloat8_e5m2: return "float8_e5m2";
    default: return c10::toString(t);
  }
}

inline std::string read_file_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_file_text(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline nlohmann::json load_manifest(const std::filesystem::path& dir, const std::string& file) {
  return nlohmann::json::parse(read_file_text(dir / (file + ".expected.json")));
}

// Same names, and for each tensor the same dtype, shape and bytes (NaN-exact: bitwise).
inline void expect_matches_manifest(const clipguide::TensorMap& got, const std::filesystem::path& dir,
                                    const std::string& file) {
  const nlohmann::json manifest = load_manifest(dir, file);
  std::set<std::string> expected_names, got_names;
  for (const auto& [name, _] : manifest["tensors"].items()) expected_names.insert(name);
  for (const auto& [name, _] : got) got_names.insert(name);
  EXPECT_EQ(got_names, expected_names) << file << ": tensor names differ";
  int compared = 0;
  for (const auto& [name, entry] : manifest["tensors"].items()) {
    auto it = got.find(name);
    if (it == got.end()) continue;
    const at::Tensor& t = it->second;
    EXPECT_EQ(torch_dtype_name(t.scalar_type()), entry["dtype"].get<std::string>()) << file << " '" << name << "'";
    EXPECT_EQ(t.sizes().vec(), entry["shape"].get<std::vector<int64_t>>()) << file << " '" << name << "'";
    if (torch_dtype_name(t.scalar_type()) != entry["dtype"].get<std::string>() ||
        t.sizes().vec() != entry["shape"].get<std::vector<int64_t>>()) {
      continue;
    }
    const std::string bytes = read_file_text(dir / entry["file"].get<std::string>());
    const at::Tensor c = t.contiguous();
    ASSERT_EQ(static_cast<size_t>(c.nbytes()), bytes.size()) << file << " '" << name << "'";
    if (bytes.empty()) continue;
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    size_t first_diff = bytes.size();
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (p[i] != static_cast<unsigned char>(bytes[i])) {
        first_diff = i;
        break;
      }
    }
    EXPECT_EQ(first_diff, bytes.size()) << file << " '" << name << "': bytes differ first at byte " << first_diff
                                        << " of " << bytes.size();
    ++compared;
  }
  std::cout << "  [" << file << ": " << compared << " tensors bit-identical]\n";
}

// Expects `f` to throw clipguide::Error whose message contains every one of `parts`.
template <typename F>
void expect_error_containing(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected clipguide::Error containing '" << *parts.begin() << "', nothing thrown";
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const auto& part : parts) EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' not in: " << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected clipguide::Error, got another exception: " << error_text(e);
  }
}

// $CLIPGUIDE_PYTHON; else CLIPGUIDE_PYTHON from the CMakeCache.txt of the build this test binary
// sits in (ctest may pass only the first variable of the harness's ENVIRONMENT list); else empty
// (callers GTEST_SKIP with a message).
inline std::string python() {
  const char* p = std::getenv("CLIPGUIDE_PYTHON");
  if (p && *p) return p;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (auto dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
    std::ifstream cache(dir / "CMakeCache.txt");
    if (!cache) continue;
    const std::string key = "CLIPGUIDE_PYTHON:FILEPATH=";
    for (std::string line; std::getline(cache, line);) {
      if (line.rfind(key, 0) == 0) return line.substr(key.size());
    }
    return "";
  }
  return "";
}

// Runs `python script_file` with args; returns the exit status.
inline int run_python(const std::filesystem::path& script, const std::string& code, const std::string& args) {
  write_file_text(script, code);
  const std::string command = "'" + python() + "' '" + script.string() + "' " + args;
  return std::system(command.c_str());
}

}  // namespace clipguide::test
