// Helpers shared by the tests: tensor comparison that prints the max difference, fixture paths.
#pragma once

#include "core/error.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace clipguide::test {

// Asserts |a - b| <= atol + rtol * |b| everywhere; on failure prints shapes, max abs diff and where.
::testing::AssertionResult tensors_close(const at::Tensor& a, const at::Tensor& b, double atol, double rtol = 0.0);
#define EXPECT_TENSOR_CLOSE(a, b, atol, rtol) EXPECT_TRUE(::clipguide::test::tensors_close((a), (b), (atol), (rtol)))

// Max |a - b| (as double), for printing figures.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);

// Folder written by tests/reference/<name>.py (env CLIPGUIDE_FIXTURES/<name>). Fails the test, never
// skips, when it is missing: ctest runs the fixture first, so missing means the reference script broke.
std::filesystem::path fixture_dir(const std::string& name);

// The test data carried in the repository (tests/data); a test failure when it is missing.
std::filesystem::path test_data_dir();
// OpenAI's BPE vocabulary in it (tests/data/openai-clip/bpe_simple_vocab_16e6.txt.gz).
std::filesystem::path openai_vocabulary();

// Printable form of a UTF-8 string for failure messages: controls and non-ASCII as \uXXXX.
std::string escaped(const std::string& s);

// The message of the clipguide::Error that fn() throws; a test failure (and "") when it throws none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a clipguide::Error";
  return "";
}

// A fresh empty temporary folder for this test.
std::filesystem::path temp_dir();

}  // namespace clipguide::test
