// Tests for core/io/safetensors: files written by the reference package (every dtype, metadata),
// round trips checked by the Python package, and every validation rule with a hand-built bad file.
#include "core/io/safetensors.h"

#include "io_test_util.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/randn.h>

#include <chrono>
#include <cstdio>

using namespace clipguide;
using namespace clipguide;
using clipguide::test::expect_error_containing;

namespace {

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file from a raw header text and `data_bytes` zero bytes of data.
std::filesystem::path raw_file(const std::string& header, size_t data_bytes, const std::string& name = "bad.safetensors") {
  auto path = test::temp_dir() / name;
  test::write_file_text(path, le64(header.size()) + header + std::string(data_bytes, '\0'));
  return path;
}

}  // namespace

TEST(Safetensors, ReadsReferenceFileOfEveryDtype) {
  const auto dir = test::fixture_dir("weights_io");
  const SafetensorsFile file = read_safetensors(dir / "all_dtypes.safetensors");
  test::expect_matches_manifest(file.tensors, dir, "all_dtypes.safetensors");
  const auto manifest = test::load_manifest(dir, "all_dtypes.safetensors");
  EXPECT_EQ(file.metadata, (manifest["metadata"].get<std::map<std::string, std::string>>()));
  EXPECT_EQ(file.metadata.at("note"), "naïve ✓ unicode");
}

TEST(Safetensors, ReadsFileWithoutMetadata) {
  const auto dir = test::fixture_dir("weights_io");
  const SafetensorsFile file = read_safetensors(dir / "no_metadata.safetensors");
  test::expect_matches_manifest(file.tensors, dir, "no_metadata.safetensors");
  EXPECT_TRUE(file.metadata.empty());
}

TEST(Safetensors, TensorsOutliveTheFile) {
  const auto dir = test::fixture_dir("weights_io");
  const auto copy = test::temp_dir() / "copy.safetensors";
  std::filesystem::copy_file(dir / "no_metadata.safetensors", copy);
  TensorMap tensors = read_safetensors(copy).tensors;
  std::filesystem::remove(copy);
  test::expect_matches_manifest(tensors, dir, "no_metadata.safetensors");
}

TEST(Safetensors, RoundTripKeepsEveryDtypeAndMetadata) {
  const auto dir = test::fixture_dir("weights_io");
  const SafetensorsFile original = read_safetensors(dir / "all_dtypes.safetensors");
  TensorMap tensors = original.tensors;
  tensors["transposed"] = at::randn({3, 5}).t();  // written as a contiguous copy
  const auto out = test::temp_dir() / "round.safetensors";
  write_safetensors(out, tensors, original.metadata);
  const SafetensorsFile back = read_safetensors(out);
  EXPECT_EQ(back.metadata, original.metadata);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  EXPECT_TRUE(back.tensors.at("transposed").equal(tensors.at("transposed")));
  TensorMap rest = back.tensors;
  rest.erase("transposed");
  test::expect_matches_manifest(rest, dir, "all_dtypes.safetensors");
  // No temporary file is left next to the output.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(out.parent_path())) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, WrittenFileLoadsInThePythonPackage) {
  if (test::python().empty()) GTEST_SKIP() << "CLIPGUIDE_PYTHON not set: cannot check with the Python safetensors package";
  const auto dir = test::fixture_dir("weights_io");
  const SafetensorsFile original = read_safetensors(dir / "all_dtypes.safetensors");
  const auto tmp = test::temp_dir();
  write_safetensors(tmp / "cpp.safetensors", original.tensors, original.metadata);
  const std::string code = R"PY(
import sys, torch
from safetensors import safe_open
from safetensors.torch import load_file
got, want = load_file(sys.argv[1]), load_file(sys.argv[2])
assert sorted(got) == sorted(want), (sorted(got), sorted(want))
for k in want:
    a, b = got[k], want[k]
    assert a.dtype == b.dtype and a.shape == b.shape, (k, a.dtype, b.dtype, a.shape, b.shape)
    assert torch.equal(a.view(-1).view(torch.uint8) if a.numel() else a, b.view(-1).view(torch.uint8) if b.numel() else b), k
with safe_open(sys.argv[1], "pt") as f, safe_open(sys.argv[2], "pt") as g:
    assert f.metadata() == g.metadata(), (f.metadata(), g.metadata())
print("python safetensors: %d tensors identical" % len(want))
)PY";
  EXPECT_EQ(test::run_python(tmp / "check.py", code,
                             "'" + (tmp / "cpp.safetensors").string() + "' '" + (dir / "all_dtypes.safetensors").string() + "'"),
            0);
}

TEST(Safetensors, WriteIsAtomicAndRefusesBadInput) {
  const auto tmp = test::temp_dir();
  const auto path = tmp / "w.safetensors";
  write_safetensors(path, {{"a", at::arange(4, at::kFloat)}});
  const std::string before = test::read_file_text(path);
  expect_error_containing([&] { write_safetensors(path, {{"__metadata__", at::arange(2)}}); }, {"invalid tensor name"});
  expect_error_containing([&] { write_safetensors(path, {{"x", at::Tensor()}}); }, {"'x'", "undefined"});
  expect_error_containing([&] { write_safetensors(path, {{"c", at::randn({2}, at::kComplexDouble)}}); },
                          {"'c'", "cannot store"});
  EXPECT_EQ(test::read_file_text(path), before);  // the old file is untouched
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(tmp)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1) << "a temporary file was left behind";
  expect_error_containing([&] { write_safetensors(tmp / "no" / "such" / "dir.safetensors", {}); }, {"cannot create"});
}

TEST(Safetensors, MisalignedDataIsCopied) {
  // Data at an offset that is not a multiple of 4: F32 values there cannot be viewed in place.
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string h = header;
  while ((8 + h.size()) % 4 != 1) h += ' ';  // data starts 1 byte past a 4-byte boundary
  float values[2] = {1.5f, -2.25f};
  auto path = test::temp_dir() / "mis.safetensors";
  test::write_file_text(path, le64(h.size()) + h + std::string(reinterpret_cast<const char*>(values), 8));
  const auto t = read_safetensors(path).tensors.at("a");
  EXPECT_EQ(t[0].item<float>(), 1.5f);
  EXPECT_EQ(t[1].item<float>(), -2.25f);
}

// --- validation: every rule, with the file, the key and expected vs got in the message -------------

TEST(SafetensorsErrors, TooShortForHeaderSize) {
  auto path = test::temp_dir() / "short.safetensors";
  test::write_file_text(path, "abc");
  expect_error_containing([&] { read_safetensors(path); }, {path.string(), "3 bytes", "too short"});
}

TEST(SafetensorsErrors, HeaderSizeOverLimit) {
  auto path = test::temp_dir() / "huge.safetensors";
  test::write_file_text(path, le64(uint64_t{1} << 40) + "{}");
  expect_error_containing([&] { read_safetensors(path); }, {path.string(), "expected at most 100000000"});
}

TEST(SafetensorsErrors, HeaderSizeBeyondFile) {
  auto path = test::temp_dir() / "trunc.safetensors";
  test::write_file_text(path, le64(1000) + "{}");
  expect_error_containing([&] { read_safetensors(path); }, {"got 1000 bytes", "only 2 bytes", "truncated"});
}

TEST(SafetensorsErrors, BadJson) {
  expect_error_containing([&] { read_safetensors(raw_file(R"({"a": {"dtype": )", 0)); }, {"not valid UTF-8 JSON"});
  expect_error_containing([&] { read_safetensors(raw_file("{\"a\xff\": 1}", 0)); }, {"not valid UTF-8 JSON"});
  expect_error_containing([&] { read_safetensors(raw_file("[1, 2]", 0)); }, {"does not start with '{'"});
}

// Headers nesting thousands deep (in a metadata value, in data_offsets, in shape) are refused from the
// text, before the JSON library could recurse through them; strings holding brackets do not count.
TEST(SafetensorsErrors, DeepNestingIsRefused) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const std::string& header :
       {R"({"__metadata__": {"a": )" + deep + "}}", R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": )" + deep + "}}",
        R"({"a": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 4]}})"}) {
    expect_error_containing([&] { read_safetensors(raw_file(header, 4)); }, {"bad.safetensors", "nests JSON deeper than 3"});
  }
  auto ok = read_safetensors(raw_file(R"({"__metadata__": {"note": "[[[[{{{{"}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 4));
  EXPECT_EQ(ok.metadata.at("note"), "[[[[{{{{");
}

// A header of 200,000 empty tensors: read in linear time.
TEST(Safetensors, ManyEntriesReadQuickly) {
  std::string header = "{";
  for (int i = 0; i < 200000; ++i) header += (i ? ",\"t" : "\"t") + std::to_string(i) + R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
  header += "}";
  const auto start = std::chrono::steady_clock::now();
  auto file = read_safetensors(raw_file(header, 0));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("200000 entries: %.2f s\n", seconds);
  EXPECT_EQ(file.tensors.size(), 200000u);
  EXPECT_LT(seconds, 30.0);
}

TEST(SafetensorsErrors, EntryNotAnObjectOrMissingFields) {
  expect_error_containing([&] { read_safetensors(raw_file(R"({"a": 3})", 0)); }, {"'a'", "expected an object"});
  expect_error_containing([&] { read_safetensors(raw_file(R"({"a": {"shape": [], "data_offsets": [0, 0]}})", 0)); },
                          {"'a'", "dtype"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", 0)); },
      {"'a'", "non-negative"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", 4)); },
      {"'a'", "data_offsets", "expected [begin, end]"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8)); },
      {"'a'", "end before they begin"});
}

TEST(SafetensorsErrors, UnknownDtype) {
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}})", 1)); },
      {"'w'", "unknown or unsupported dtype \"F7\"", "F32"});
}

TEST(SafetensorsErrors, WrongByteCount) {
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 4)); },
      {"'w'", "got 4 bytes, expected 8", "[2]"});
  // A shape whose byte count overflows 64 bits must not wrap around to a small number.
  expect_error_containing(
      [&] {
        read_safetensors(raw_file(
            R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 0]}})", 0));
      },
      {"'w'", "overflows"});
}

TEST(SafetensorsErrors, OverlapHoleTrailingAndTruncatedData) {
  const std::string two = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )";
  expect_error_containing(
      [&] { read_safetensors(raw_file(two + R"("b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12)); },
      {"'b'", "begin at byte 4, expected 8", "overlapping", "'a'"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(two + R"("b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})", 20)); },
      {"'b'", "begin at byte 12, expected 8", "hole"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12)); },
      {"'a'", "expected 0", "the start of the data"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 10)); },
      {"ends at byte 8", "data section is 10 bytes", "trailing"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 5)); },
      {"ends at byte 8", "data section is 5 bytes", "truncated"});
}

TEST(SafetensorsErrors, DuplicateKeys) {
  expect_error_containing(
      [&] {
        read_safetensors(raw_file(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                                  R"( "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})", 2));
      },
      {"duplicate key 'a'"});
  expect_error_containing(
      [&] { read_safetensors(raw_file(R"({"a": {"dtype": "U8", "dtype": "U8", "shape": [1], "data_offsets": [0, 1]}})", 1)); },
      {"duplicate key 'dtype'"});
}

TEST(SafetensorsErrors, MetadataMustBeStrings) {
  expect_error_containing([&] { read_safetensors(raw_file(R"({"__metadata__": {"n": 3}})", 0)); },
                          {"__metadata__ key 'n'", "number", "expected a string"});
  expect_error_containing([&] { read_safetensors(raw_file(R"({"__metadata__": [1]})", 0)); },
                          {"__metadata__", "expected an object"});
}

TEST(SafetensorsErrors, EveryTruncationOfARealFileIsAnError) {
  const auto dir = test::fixture_dir("weights_io");
  const std::string bytes = test::read_file_text(dir / "all_dtypes.safetensors");
  const auto path = test::temp_dir() / "cut.safetensors";
  int errors = 0;
  for (size_t n = 0; n < bytes.size(); n += std::max<size_t>(1, bytes.size() / 97)) {
    test::write_file_text(path, bytes.substr(0, n));
    try {
      read_safetensors(path);
      ADD_FAILURE() << "no error for a file cut at " << n << " of " << bytes.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
      ++errors;
    }
  }
  EXPECT_GT(errors, 50);
}

TEST(SafetensorsErrors, MissingFile) {
  expect_error_containing([&] { read_safetensors("/nonexistent/x.safetensors"); }, {"/nonexistent/x.safetensors", "cannot open"});
}
