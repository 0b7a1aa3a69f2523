// StepProfile: records the operators (and on CUDA the kernels and runtime calls) of a few steps with LibTorch's
// Kineto profiler, then prints the names that took the most time and saves a Chrome trace. For finding where a
// step's time goes on a machine one cannot sit at: the summary is plain text in the program's output.
#pragma once

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace clipguide::bench {

class StepProfile {
 public:
  // Starts recording CPU operators, and CUDA kernels when `cuda`. `shapes`: rows per name and input shapes.
  explicit StepProfile(bool cuda, bool shapes = false) : shapes_(shapes) {
    namespace prof = torch::profiler::impl;
    std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
    if (cuda) activities.insert(prof::ActivityType::CUDA);
    const prof::ProfilerConfig config(prof::ProfilerState::KINETO, /*report_input_shapes=*/shapes);
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  }

  // Stops recording; prints the `top` names by total time per device type over `steps` steps (CPU times are
  // inclusive: an operator counts its callees), and saves a Chrome trace to `trace_path` when not empty.
  void finish(int64_t steps, const std::string& trace_path, size_t top = 15) {
    auto result = torch::autograd::profiler::disableProfiler();
    struct Total {
      double ms = 0;
      int64_t calls = 0;
    };
    std::map<std::string, std::map<std::string, Total>> by_device;  // device -> name -> total
    for (const auto& e : result->events()) {
      const std::string device = e.deviceType() == c10::DeviceType::CUDA ? "CUDA" : "CPU";
      std::string key = e.name();
      if (shapes_) {
        for (const auto& shape : e.shapes()) {
          key += " [";
          for (size_t i = 0; i < shape.size(); ++i) key += (i ? "," : "") + std::to_string(shape[i]);
          key += "]";
        }
      }
      Total& t = by_device[device][key];
      t.ms += static_cast<double>(e.durationNs()) / 1e6;
      t.calls += 1;
    }
    for (const auto& [device, totals] : by_device) {
      std::vector<std::pair<std::string, Total>> rows(totals.begin(), totals.end());
      std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
      double sum = 0;
      for (const auto& r : rows) sum += r.second.ms;
      std::printf("profile, %s, per step (%lld steps)%s:\n", device.c_str(), static_cast<long long>(steps),
                  device == "CPU" ? ", inclusive times" : "");
      for (size_t i = 0; i < rows.size() && i < top; ++i) {
        std::printf("  %9.3f ms  %6.1f calls  %s\n", rows[i].second.ms / static_cast<double>(steps),
                    static_cast<double>(rows[i].second.calls) / static_cast<double>(steps), rows[i].first.substr(0, shapes_ ? 160 : 90).c_str());
      }
      if (device == "CUDA") std::printf("  %9.3f ms  in all kernels and copies\n", sum / static_cast<double>(steps));
    }
    if (!trace_path.empty()) result->save(trace_path);
  }

 private:
  bool shapes_;
};

}  // namespace clipguide::bench
