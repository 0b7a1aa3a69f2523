// Tests for clipnet/image_io's refusals: files that are not regular (/dev/zero, a folder), PNG and JPEG
// files cut short or damaged (one clear error, nothing printed by the decoders), headers beyond the pixel
// limit (refused before decoding) and images of more than 4 channels; on the writing side, NaN pixels are
// never written and check_image_output refuses what write_image could not do, before a run.
#include "core/image_io.h"

#include "core/error.h"
#include "test_util.h"

#include <ATen/ops/full.h>
#include <ATen/ops/randint.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>

namespace clipguide::clipnet {
namespace {

using test::error_of;

std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A PNG chunk: length, type, data, CRC.
std::string chunk(const std::string& type, const std::string& data) {
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  const std::string body = type + data;
  const auto crc = static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
  return be32(static_cast<uint32_t>(data.size())) + body + be32(crc);
}

class ImageIo : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
    dir_ = test::temp_dir();
    at::Tensor image = at::randint(0, 256, {3, 48, 64}, at::kByte);
    write_image(dir_ / "whole.png", image);
    write_image(dir_ / "whole.jpg", image);
  }
  std::filesystem::path dir_;
};

TEST_F(ImageIo, NonFinitePixelsAreNeverWritten) {
  at::Tensor image = at::full({3, 8, 8}, 0.5);
  image[1][2][3] = std::nan("");
  const std::string e = error_of([&] { write_image(dir_ / "whole.png", image); });
  EXPECT_NE(e.find("non-finite"), std::string::npos) << e;
  EXPECT_NE(e.find("whole.png"), std::string::npos) << e;
  EXPECT_EQ(read_image(dir_ / "whole.png").size(1), 48);  // the earlier file is untouched
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

TEST_F(ImageIo, CheckImageOutputRefusesWhatCannotBeWritten) {
  EXPECT_NO_THROW(check_image_output(dir_ / "new.png", "--output"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "new.png"));
  const std::string missing = error_of([&] { check_image_output(dir_ / "no" / "x.png", "--output"); });
  EXPECT_NE(missing.find("--output"), std::string::npos) << missing;
  EXPECT_NE(missing.find("does not exist"), std::string::npos) << missing;
  write_bytes(dir_ / "file", "x");
  EXPECT_NE(error_of([&] { check_image_output(dir_ / "file" / "x.png", "-o"); }).find("is not a folder"), std::string::npos);
  EXPECT_NE(error_of([&] { check_image_output(dir_ / "x.nosuchformat", "-o"); }).find(".nosuchformat"), std::string::npos);
  EXPECT_NE(error_of([&] { check_image_output(dir_ / "x", "-o"); }).find("image extension"), std::string::npos);
  std::filesystem::create_directory(dir_ / "d.png");
  EXPECT_NE(error_of([&] { check_image_output(dir_ / "d.png", "-o"); }).find("is a folder"), std::string::npos);
}

TEST_F(ImageIo, NotARegularFileIsRefusedAtOnce) {
  EXPECT_NE(error_of([] { read_image("/dev/zero"); }).find("'/dev/zero' is not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { read_image(dir_); }).find("is not a regular file"), std::string::npos);
  EXPECT_NE(error_of([] { read_image_metadata("/dev/zero"); }).find("is not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { read_image(dir_ / "none.png"); }).find("does not exist"), std::string::npos);
}

TEST_F(ImageIo, CutOrDamagedFilesAreOneClearError) {
  for (const std::string name : {"whole.png", "whole.jpg"}) {
    SCOPED_TRACE(name);
    const std::string bytes = read_bytes(dir_ / name);
    EXPECT_EQ(read_image(dir_ / name).size(1), 48);
    write_bytes(dir_ / ("cut-" + name), bytes.substr(0, bytes.size() / 2));
    testing::internal::CaptureStderr();
    const std::string message = error_of([&] { read_image(dir_ / ("cut-" + name)); });
    const std::string printed = testing::internal::GetCapturedStderr();
    EXPECT_NE(message.find("cut-" + name + "' is cut short"), std::string::npos) << message;
    EXPECT_EQ(printed, "") << "the decoder printed its own messages";
    EXPECT_NE(error_of([&] { decode_image(bytes.data(), bytes.size() / 2, name); }).find("is cut short"), std::string::npos);
  }
  std::string png = read_bytes(dir_ / "whole.png");
  png[40] ^= 0x5A;  // inside the first chunk after IHDR: its CRC no longer matches
  write_bytes(dir_ / "crc.png", png);
  EXPECT_NE(error_of([&] { read_image(dir_ / "crc.png"); }).find("does not match"), std::string::npos);
}

// A few hundred bytes claiming 16384 x 16384: refused from the header, before 800 MB are allocated.
TEST_F(ImageIo, HeadersBeyondThePixelLimitAreRefused) {
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  const std::string ihdr = be32(16384) + be32(16384) + std::string{8, 2, 0, 0, 0};  // 8-bit RGB
  std::string zeros(1024, '\0'), deflated(compressBound(1024), '\0');
  uLongf n = deflated.size();
  ASSERT_EQ(compress(reinterpret_cast<Bytef*>(&deflated[0]), &n, reinterpret_cast<const Bytef*>(zeros.data()), zeros.size()), Z_OK);
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", deflated.substr(0, n)) +
                          chunk("IEND", "");
  write_bytes(dir_ / "bomb.png", png);
  const std::string message = error_of([&] { read_image(dir_ / "bomb.png"); });
  EXPECT_NE(message.find("16384x16384 = 268435456 pixels, above the limit of 67108864"), std::string::npos) << message;
  EXPECT_NE(message.find("CLIPGUIDE_MAX_IMAGE_PIXELS"), std::string::npos) << message;
  EXPECT_EQ(max_image_pixels(), 8192 * 8192);
  setenv("CLIPGUIDE_MAX_IMAGE_PIXELS", "1000", 1);
  EXPECT_NE(error_of([&] { read_image(dir_ / "whole.png"); }).find("above the limit of 1000"), std::string::npos);
  setenv("CLIPGUIDE_MAX_IMAGE_PIXELS", "lots", 1);
  EXPECT_NE(error_of([] { max_image_pixels(); }).find("'lots' is not a positive whole number"), std::string::npos);
  unsetenv("CLIPGUIDE_MAX_IMAGE_PIXELS");
}

}  // namespace
}  // namespace clipguide::clipnet
