// Counter-based randomness for data pipelines: every sample's draws are a pure function of
// (seed, epoch, index, ...), so any rank or worker thread reproduces them, whatever the timing.
// SplitMix64 (Steele et al. 2014); the integer and real draws are defined here, not by <random>'s
// distributions, whose algorithms differ between standard libraries.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>

namespace clipguide::train {

// One SplitMix64 step: a well-mixed 64-bit function of x.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Hash of a tuple of integers (order matters): the seed of one sample's generator.
inline uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x243F6A8885A308D3ull;
  for (uint64_t p : parts) h = splitmix64(h ^ splitmix64(p));
  return h;
}

// Small deterministic generator.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next_u64() { return splitmix64(state_++ * 0x9E3779B97F4A7C15ull + 1); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n) (n > 0); the modulo bias is below 2^-40 for the n used here.
  int64_t below(int64_t n) { return static_cast<int64_t>(next_u64() % static_cast<uint64_t>(n)); }
  bool chance(double p) { return uniform() < p; }

 private:
  uint64_t state_;
};

}  // namespace clipguide::train
