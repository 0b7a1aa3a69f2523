// Memory sizes, meters and what is free (see memory.h).
#include "core/memory.h"

#include "core/error.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#if CLIPGUIDE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

namespace clipguide {
namespace {

// LibTorch's CPU allocation (c10::alloc_cpu / free_cpu, as its default allocator does) with every live
// allocation's size in a table, so that the bytes in use and their peak are known. The data pointer is its
// own context, so raw_allocate / raw_deallocate keep working.
class CountingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    void* data = n > 0 ? c10::alloc_cpu(n) : nullptr;
    if (data) {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[data] = n;
      current_ += static_cast<int64_t>(n);
      peak_ = std::max(peak_, current_);
    }
    return {data, data, &release, c10::Device(c10::kCPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  int64_t current() {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
  }
  int64_t peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = current_;
  }

  static CountingCpuAllocator& instance() {
    static CountingCpuAllocator* allocator = [] {
      auto* a = new CountingCpuAllocator();  // never destroyed: tensors freed at exit still call release()
      c10::SetCPUAllocator(a, /*priority=*/1);
      return a;
    }();
    return *allocator;
  }

 private:
  static void release(void* data) {
    if (!data) return;
    CountingCpuAllocator& self = instance();
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      auto it = self.sizes_.find(data);
      if (it != self.sizes_.end()) {
        self.current_ -= static_cast<int64_t>(it->second);
        self.sizes_.erase(it);
      }
    }
    c10::free_cpu(data);
  }

  std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;
  int64_t current_ = 0, peak_ = 0;
};

#if CLIPGUIDE_WITH_CUDA
// Index 0 of the caching allocator's stat arrays is StatType::AGGREGATE (every pool), in every LibTorch 2.x.
auto cuda_stats(c10::Device device) {  // DeviceStats moved namespace in 2.6: auto keeps 2.4 building
  return c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
}
#endif

}  // namespace

int64_t parse_bytes(const std::string& text, const std::string& flag) {
  const std::string expected = flag + ": expected a size such as 6G, 1.5GiB, 512M or a number of bytes, got '" + text + "'";
  std::istringstream in(text);
  double value = 0;
  if (!(in >> value) || !std::isfinite(value)) throw Error(expected);
  std::string unit;
  std::getline(in, unit);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
  int shift = 0;
  if (unit == "" || unit == "b") {
    shift = 0;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    shift = 10;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    shift = 20;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    shift = 30;
  } else if (unit == "t" || unit == "tb" || unit == "tib") {
    shift = 40;
  } else {
    throw Error(expected);
  }
  const double bytes = std::ldexp(value, shift);
  if (bytes < 1 || bytes > 9.0e18) throw Error(expected);
  return static_cast<int64_t>(bytes);
}

std::string format_bytes(int64_t bytes) {
  char text[32];
  const double mib = static_cast<double>(bytes) / (1 << 20);
  if (mib >= 1024) {
    std::snprintf(text, sizeof text, "%.1f GiB", mib / 1024);
  } else {
    std::snprintf(text, sizeof text, "%.0f MiB", mib);
  }
  return text;
}

MemoryMeter::MemoryMeter(c10::Device device) : device_(device) {
  if (device.is_cpu()) {
    CountingCpuAllocator::instance();
    return;
  }
#if CLIPGUIDE_WITH_CUDA
  if (device.is_cuda()) {
    if (device_.index() < 0) device_ = c10::Device(c10::kCUDA, 0);
    return;
  }
#endif
  throw Error("memory meter: no memory statistics for device " + device.str() +
              (device.is_cuda() ? " (this build of clipguide has no CUDA)" : ""));
}

int64_t MemoryMeter::current() const {
#if CLIPGUIDE_WITH_CUDA
  if (device_.is_cuda()) return cuda_stats(device_).allocated_bytes[0].current;
#endif
  return CountingCpuAllocator::instance().current();
}

int64_t MemoryMeter::peak() const {
#if CLIPGUIDE_WITH_CUDA
  if (device_.is_cuda()) return cuda_stats(device_).allocated_bytes[0].peak;
#endif
  return CountingCpuAllocator::instance().peak();
}

void MemoryMeter::reset_peak() {
#if CLIPGUIDE_WITH_CUDA
  if (device_.is_cuda()) return c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index());
#endif
  CountingCpuAllocator::instance().reset_peak();
}

int64_t available_bytes(c10::Device device) {
  if (device.is_cpu()) {
    std::ifstream in("/proc/meminfo");
    std::string key;
    int64_t kib = 0;
    std::string unit;
    while (in >> key >> kib >> unit) {
      if (key == "MemAvailable:") return kib * 1024;
    }
    return -1;
  }
#if CLIPGUIDE_WITH_CUDA
  if (device.is_cuda()) {
    int previous = 0;
    if (cudaGetDevice(&previous) != cudaSuccess) return -1;
    size_t free = 0, total = 0;
    const bool ok = cudaSetDevice(std::max<int>(device.index(), 0)) == cudaSuccess &&
                    cudaMemGetInfo(&free, &total) == cudaSuccess;
    cudaSetDevice(previous);
    return ok ? static_cast<int64_t>(free) : -1;
  }
#endif
  return -1;
}

int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  if (!(in >> pages >> resident)) return -1;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

int64_t peak_resident_bytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux: kilobytes
}

bool keep_freed_memory() {
#if defined(__GLIBC__)
  // glibc's defaults: blocks of 128 KiB and more (the threshold rising with what is freed) come from mmap and
  // go back to the system when freed, the heap's top is trimmed past 128 KiB. Its largest threshold, 32 MiB,
  // and a trim threshold of 2 GiB keep a step's tensors in pages that were used before.
  const bool mmap_set = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool trim_set = mallopt(M_TRIM_THRESHOLD, 0x7fffffff) == 1;
  const bool pad_set = mallopt(M_TOP_PAD, 64 << 20) == 1;
  return mmap_set && trim_set && pad_set;
#else
  return false;
#endif
}

void release_freed_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace clipguide
