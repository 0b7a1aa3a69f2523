// Tests for clipnet/autocast: the guard turns autocast on for one device type and restores the previous
// state (nested guards too), kFloat is a no-op, and precision names round-trip.
#include "core/autocast.h"

#include "core/error.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/randn.h>
#include <gtest/gtest.h>

namespace clipguide::clipnet {
namespace {

TEST(Autocast, GuardComputesLinearInBf16AndRestores) {
  ASSERT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
  auto x = at::randn({4, 8}), w = at::randn({3, 8});  // fp32
  {
    AutocastGuard guard(at::kCPU, at::kBFloat16);
    EXPECT_TRUE(guard.active());
    EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCPU));
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kBFloat16);
    {
      AutocastGuard inner(at::kCPU, at::kFloat);  // a pass-through setting changes nothing
      EXPECT_FALSE(inner.active());
      EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCPU));
    }
    EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCPU));
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
  EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
}

TEST(Autocast, CudaGuardDoesNotTouchCpu) {
  // Setting the CUDA autocast state needs no GPU; CPU ops stay fp32 under it.
  auto x = at::randn({4, 8}), w = at::randn({3, 8});
  {
    AutocastGuard guard(at::kCUDA, at::kBFloat16);
    EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCUDA));
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCUDA));
}

TEST(Autocast, PrecisionNames) {
  EXPECT_EQ(parse_precision("fp32"), at::kFloat);
  EXPECT_EQ(parse_precision("bf16"), at::kBFloat16);
  EXPECT_EQ(parse_precision("fp16"), at::kHalf);
  EXPECT_EQ(precision_name(parse_precision("bf16")), "bf16");
  EXPECT_THROW(parse_precision("int8", "--bench-precision"), Error);
}

}  // namespace
}  // namespace clipguide::clipnet
