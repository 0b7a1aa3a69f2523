// Tests for core/error.h: shape formatting and LibTorch errors without backtraces.
#include "core/error.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace clipguide {
namespace {

TEST(ShapeStr, FormatsDims) {
  EXPECT_EQ(shape_str({}), "[]");
  EXPECT_EQ(shape_str({2, 3, 224}), "[2, 3, 224]");
}

TEST(ErrorText, DropsLibTorchBacktrace) {
  try {
    TORCH_CHECK(false, "bad thing");
  } catch (const std::exception& e) {
    EXPECT_EQ(error_text(e), "bad thing");
  }
  EXPECT_EQ(error_text(Error("file x: key y")), "file x: key y");
}

}  // namespace
}  // namespace clipguide
