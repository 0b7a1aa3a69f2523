// Memory as the memory planner (app/memory_plan.h) and the benches see it: sizes written as "6G", the
// tensor memory a device has handed out (now and at its peak), what the device has free, and the process's
// resident size.
//
// CPU: a counting allocator replaces LibTorch's CPU allocator the first time a MemoryMeter is made for the
// CPU (same allocation calls, plus a size table under a mutex) and stays: tensors outlive meters. CUDA: the
// caching allocator's own statistics (torch.cuda.memory_allocated / max_memory_allocated), in CUDA builds.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace clipguide {

// "6G", "6GB", "6GiB", "1.5g", "512M", "800K", "1000000" (bytes): binary units (G = 2^30). Anything else,
// or a size below 1 byte, is a clipguide::Error naming `flag` and the expected form.
int64_t parse_bytes(const std::string& text, const std::string& flag);
// 1536 MiB → "1.5 GiB"; below a GiB in MiB.
std::string format_bytes(int64_t bytes);

class MemoryMeter {
 public:
  // A clipguide::Error for a CUDA device in a build without CUDA, or a device kind without statistics.
  explicit MemoryMeter(c10::Device device);
  int64_t current() const;  // tensor bytes allocated on the device now
  int64_t peak() const;     // the most allocated at once since reset_peak() (or since the meter was made)
  void reset_peak();        // the peak starts again from current()
  c10::Device device() const { return device_; }

 private:
  c10::Device device_;
};

// What the device can still give: CPU: MemAvailable of /proc/meminfo; CUDA: the card's free memory. -1 when
// unknown.
int64_t available_bytes(c10::Device device);
// This process's resident set size now (CPU memory of every kind: tensors, code, allocator slack); -1 when
// unknown.
int64_t resident_bytes();
// The most this process has had resident since it started (getrusage's ru_maxrss); -1 when unknown.
int64_t peak_resident_bytes();

// Makes the C allocator keep freed tensor memory for reuse instead of handing it back to the system. With
// glibc's defaults every large CPU tensor is a fresh mmap whose pages the kernel zero-fills on first touch,
// and a guidance step allocates gigabytes that way: this made a CPU diffusion step about 10% faster, and with
// release_freed_memory after loading the peak resident size moved by 50 MiB at most (bench/diffusion_bench,
// bench/memory_bench.py). The tools call it first thing; a program linking the library may call it too.
// False where it cannot (not glibc). Process-wide.
bool keep_freed_memory();
// Hands what is free in the C allocator back to the system (glibc's malloc_trim): after loading weights, whose
// file buffers and conversions keep_freed_memory would otherwise keep resident for the whole run.
void release_freed_memory();

}  // namespace clipguide
