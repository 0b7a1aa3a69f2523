// Tests for core/io/weights (and torch_archive): every file weights_io.py writes with torch.save,
// torch.jit.save and safetensors comes back bit-identical under its state-dict names; malicious,
// legacy, big-endian, truncated and incomplete files give clear errors and never run anything.
#include "core/io/weights.h"

#include "core/io/torch_archive.h"
#include "io_test_util.h"

using namespace clipguide;
using namespace clipguide;
using clipguide::test::expect_error_containing;

namespace {

void expect_skipped_includes(const WeightFile& w, const std::filesystem::path& dir, const std::string& file) {
  const auto manifest = test::load_manifest(dir, file);
  for (const auto& name : manifest["skipped_classes"]) {
    EXPECT_NE(std::find(w.skipped_classes.begin(), w.skipped_classes.end(), name.get<std::string>()),
              w.skipped_classes.end())
        << file << ": '" << name.get<std::string>() << "' not in skipped_classes";
  }
}

WeightFile check_file(const std::string& file, WeightFormat format) {
  const auto dir = test::fixture_dir("weights_io");
  WeightFile w = read_weights(dir / file);
  EXPECT_EQ(to_string(w.format), to_string(format)) << file;
  test::expect_matches_manifest(w.tensors, dir, file);
  expect_skipped_includes(w, dir, file);
  return w;
}

}  // namespace

TEST(ReadWeights, Safetensors) {
  const WeightFile w = check_file("all_dtypes.safetensors", WeightFormat::kSafetensors);
  EXPECT_EQ(w.metadata.at("format"), "pt");
  EXPECT_TRUE(w.skipped_classes.empty());
}

TEST(ReadWeights, PlainStateDict) {
  const WeightFile w = check_file("plain.pt", WeightFormat::kTorchZip);
  EXPECT_TRUE(w.metadata.empty());
  EXPECT_TRUE(w.skipped_classes.empty());
}

TEST(ReadWeights, LightningCheckpointUnwrapsStateDict) { check_file("lightning.ckpt", WeightFormat::kTorchZip); }
TEST(ReadWeights, OpenClipCheckpointStripsModulePrefix) { check_file("openclip_ddp.pt", WeightFormat::kTorchZip); }
TEST(ReadWeights, ModelKeyCheckpoint) { check_file("model_key.pt", WeightFormat::kTorchZip); }
TEST(ReadWeights, EveryDtypeAndParameter) { check_file("dtypes.pt", WeightFormat::kTorchZip); }
TEST(ReadWeights, NestedValuesAndForeignObjects) { check_file("nested.pt", WeightFormat::kTorchZip); }
TEST(ReadWeights, WholePickledModuleKeepsStateDictNames) { check_file("whole_module.pt", WeightFormat::kTorchZip); }
TEST(ReadWeights, TorchScriptArchive) {
  const WeightFile w = check_file("scripted.pt", WeightFormat::kTorchScript);
  EXPECT_TRUE(w.skipped_classes.empty()) << w.skipped_classes.front();
  EXPECT_EQ(w.tensors.at("half_layer.weight").scalar_type(), at::kHalf);
}

TEST(ReadWeights, TracedHalfTorchScriptArchive) {
  const WeightFile w = check_file("traced_half.pt", WeightFormat::kTorchScript);
  EXPECT_EQ(w.tensors.at("conv1.weight").scalar_type(), at::kHalf);
}

TEST(ReadWeights, ViewsShareStorageAndKeepStrides) {
  const WeightFile w = check_file("views.pt", WeightFormat::kTorchZip);
  const auto& t = w.tensors;
  EXPECT_TRUE(t.at("slice").storage().is_alias_of(t.at("base").storage()));
  EXPECT_TRUE(t.at("strided").storage().is_alias_of(t.at("base").storage()));
  EXPECT_EQ(t.at("slice").storage_offset(), 3);
  EXPECT_FALSE(t.at("transposed").is_contiguous());
  EXPECT_EQ(t.at("transposed").strides().vec(), (std::vector<int64_t>{1, 6}));
  EXPECT_EQ(t.at("expanded").strides().vec(), (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(t.at("transposed").equal(t.at("m").t()));
}

TEST(ReadWeights, MaliciousPickleIsRecordedNotRun) {
  const auto dir = test::fixture_dir("weights_io");
  const WeightFile w = check_file("malicious.pt", WeightFormat::kTorchZip);
  EXPECT_FALSE(std::filesystem::exists(dir / "PWNED"));
  EXPECT_FALSE(std::filesystem::exists(dir / "PWNED2"));
}

TEST(ReadWeights, HandBuiltArchiveCallingExecAndPopenIsInert) {
  const auto dir = test::fixture_dir("weights_io");
  const WeightFile w = check_file("crafted_exec.pt", WeightFormat::kTorchZip);
  EXPECT_TRUE(w.tensors.empty());
  EXPECT_FALSE(std::filesystem::exists(dir / "PWNED3"));
  EXPECT_FALSE(std::filesystem::exists(dir / "PWNED4"));
  // The object records what it would have called, for diagnostics.
  const TorchArchive archive = read_torch_archive(dir / "crafted_exec.pt");
  const auto run = archive.data->get("run");
  ASSERT_TRUE(run);
  EXPECT_EQ(run->kind, PickleValue::Kind::kObject);
  EXPECT_EQ(run->text, "builtins.exec");
  EXPECT_EQ(archive.data->get("n")->integer, 1);
}

TEST(ReadWeights, DetectsFormatByContentNotExtension) {
  const auto dir = test::fixture_dir("weights_io");
  const auto tmp = test::temp_dir();
  std::filesystem::copy_file(dir / "plain.pt", tmp / "looks_like.safetensors");
  std::filesystem::copy_file(dir / "all_dtypes.safetensors", tmp / "looks_like.pt");
  EXPECT_EQ(read_weights(tmp / "looks_like.safetensors").format, WeightFormat::kTorchZip);
  EXPECT_EQ(read_weights(tmp / "looks_like.pt").format, WeightFormat::kSafetensors);
}

TEST(ReadWeightsErrors, LegacyFormat) {
  const auto dir = test::fixture_dir("weights_io");
  expect_error_containing([&] { read_weights(dir / "legacy.pt"); }, {"legacy.pt", "legacy (pre-1.6", "re-save"});
}

TEST(ReadWeightsErrors, BigEndian) {
  const auto dir = test::fixture_dir("weights_io");
  expect_error_containing([&] { read_weights(dir / "big_endian.pt"); }, {"big_endian.pt", "big-endian", "got 'big'"});
}

TEST(ReadWeightsErrors, MissingRecord) {
  const auto dir = test::fixture_dir("weights_io");
  expect_error_containing([&] { read_weights(dir / "missing_record.pt"); }, {"missing_record.pt", "missing record 'data/"});
}

TEST(ReadWeightsErrors, UnrecognizedAndEmptyFiles) {
  const auto tmp = test::temp_dir();
  test::write_file_text(tmp / "text.bin", "hello, world");
  expect_error_containing([&] { read_weights(tmp / "text.bin"); }, {"text.bin", "unrecognized format", "68 65 6c"});
  test::write_file_text(tmp / "empty.pt", "");
  expect_error_containing([&] { read_weights(tmp / "empty.pt"); }, {"empty.pt", "empty file"});
  test::write_file_text(tmp / "bare.pkl", "\x80\x02}q\x00.");
  expect_error_containing([&] { read_weights(tmp / "bare.pkl"); }, {"bare pickle"});
  expect_error_containing([&] { read_weights(tmp / "missing.pt"); }, {"missing.pt", "cannot open"});
  expect_error_containing([&] { read_weights(tmp); }, {"is a directory"});
}

TEST(ReadWeightsErrors, TruncatedArchivesAreErrors) {
  const auto dir = test::fixture_dir("weights_io");
  const auto tmp = test::temp_dir();
  for (const std::string file : {"views.pt", "scripted.pt"}) {
    const std::string bytes = test::read_file_text(dir / file);
    for (size_t n = 4; n < bytes.size(); n += std::max<size_t>(1, bytes.size() / 61)) {
      const auto path = tmp / ("cut_" + std::to_string(n) + "_" + file);
      test::write_file_text(path, bytes.substr(0, n));
      EXPECT_THROW(read_weights(path), Error) << file << " cut at " << n;
    }
  }
}

TEST(ReadWeightsErrors, CorruptedPickleInsideArchive) {
  // Flip bytes inside data.pkl (stored uncompressed, so findable): every result is a value or an Error.
  const auto dir = test::fixture_dir("weights_io");
  const std::string bytes = test::read_file_text(dir / "nested.pt");
  const size_t start = bytes.find("\x80\x02");
  ASSERT_NE(start, std::string::npos);
  const auto path = test::temp_dir() / "corrupt.pt";
  int errors = 0;
  for (size_t i = start; i < start + 600 && i < bytes.size(); i += 7) {
    std::string broken = bytes;
    broken[i] = static_cast<char>(broken[i] ^ 0x5A);
    test::write_file_text(path, broken);
    try {
      read_weights(path);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("corrupt.pt"), std::string::npos) << e.what();
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
}
