// Shared test helpers (see test_util.h).
#include "test_util.h"

#include "core/error.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>

namespace clipguide::test {

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.detach().to(at::kDouble).cpu() - b.detach().to(at::kDouble).cpu()).abs().max().item<double>();
}

::testing::AssertionResult tensors_close(const at::Tensor& a, const at::Tensor& b, double atol, double rtol) {
  if (!a.sizes().equals(b.sizes())) {
    return ::testing::AssertionFailure() << "shape mismatch: got " << shape_str(a.sizes()) << ", expected "
                                         << shape_str(b.sizes());
  }
  if (a.numel() == 0) return ::testing::AssertionSuccess();
  auto ad = a.detach().to(at::kDouble).cpu();
  auto bd = b.detach().to(at::kDouble).cpu();
  auto diff = (ad - bd).abs();
  auto bound = atol + rtol * bd.abs();
  auto over = (diff > bound).logical_or(diff.isnan());
  double max_diff = diff.max().item<double>();
  if (!over.any().item<bool>()) {
    std::cout << "  [max abs diff " << max_diff << " <= atol " << atol << "]\n";
    return ::testing::AssertionSuccess();
  }
  auto flat_index = diff.flatten().argmax().item<int64_t>();
  std::ostringstream out;
  out << "tensors differ: max abs diff " << max_diff << " at flat index " << flat_index << " (got "
      << ad.flatten()[flat_index].item<double>() << ", expected " << bd.flatten()[flat_index].item<double>()
      << "), " << over.sum().item<int64_t>() << " of " << a.numel() << " elements over atol " << atol
      << " + rtol " << rtol << ", shape " << shape_str(a.sizes());
  return ::testing::AssertionFailure() << out.str();
}

std::filesystem::path fixture_dir(const std::string& name) {
  const char* root = std::getenv("CLIPGUIDE_FIXTURES");
  if (!root) {
    ADD_FAILURE() << "CLIPGUIDE_FIXTURES is not set: run this test through ctest, which writes the reference fixtures first";
    return {};
  }
  std::filesystem::path dir = std::filesystem::path(root) / name;
  if (!std::filesystem::exists(dir / "DONE")) {
    ADD_FAILURE() << "reference fixture '" << name << "' missing at " << dir
                  << ": tests/reference/" << name << ".py did not complete (see ctest -R fixture." << name << ")";
  }
  return dir;
}

std::filesystem::path test_data_dir() {
  const std::filesystem::path dir = CLIPGUIDE_TEST_DATA_DIR;
  if (!std::filesystem::is_directory(dir)) ADD_FAILURE() << "test data folder " << dir << " missing (it is part of the repository)";
  return dir;
}

std::filesystem::path openai_vocabulary() {
  const auto path = test_data_dir() / "openai-clip" / "bpe_simple_vocab_16e6.txt.gz";
  if (!std::filesystem::exists(path)) ADD_FAILURE() << "OpenAI vocabulary " << path << " missing (it is part of the repository)";
  return path;
}

std::string escaped(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0x20 && b < 0x7F) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint32_t c = len == 1 ? b : b & (0xFF >> (len + 1));
    for (size_t k = 1; k < len && i + k < s.size(); ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    char buf[16];
    std::snprintf(buf, sizeof buf, c > 0xFFFF ? "\\U%08X" : "\\u%04X", c);
    out += buf;
    i += len;
  }
  return out;
}

std::filesystem::path temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "clipguide";
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() / ("clipguide-" + name + "-" + std::to_string(rd()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace clipguide::test
