// Helpers for the benchmarks: run the Python reference side by side and read its JSON result.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace clipguide::bench {

// Runs `command` through the shell and parses the last line of its stdout as JSON.
inline nlohmann::json run_reference(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("cannot run: " + command);
  std::string output, last;
  std::array<char, 4096> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe.get())) output += buffer.data();
  int status = pclose(pipe.release());
  if (status != 0) throw std::runtime_error("reference failed (status " + std::to_string(status) + "): " + command);
  auto end = output.find_last_not_of("\n");
  auto begin = output.find_last_of('\n', end);
  last = output.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1) + 1);
  return nlohmann::json::parse(last);
}

// The median of `values` (the mean of the middle two for an even count); 0 for none.
inline double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace clipguide::bench
