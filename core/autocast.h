// Mixed precision for inference-and-gradient code: an RAII guard that runs a region under autocast for one
// device type (LibTorch's counterpart of `with torch.autocast(device, dtype):`), and precision names.
// Weights stay fp32; matmuls and convolutions compute in the lower dtype, reductions and norms in fp32.
// Header-only. The device-type autocast API used here exists from LibTorch 2.4 on.
#pragma once

#include "core/error.h"

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace clipguide {

// "fp32" → kFloat, "bf16" → kBFloat16, "fp16" → kHalf. Throws clipguide::Error naming `flag` otherwise.
inline at::ScalarType parse_precision(const std::string& name, const std::string& flag = "--precision") {
  if (name == "fp32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  throw Error(flag + ": expected fp32, bf16 or fp16, got '" + name + "'");
}

// kBFloat16 → "bf16", kHalf → "fp16", anything else → "fp32".
inline std::string precision_name(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? "bf16" : dtype == at::kHalf ? "fp16" : "fp32";
}

// Autocast to `dtype` on `device_type` for the guard's lifetime; the previous state is restored after.
// A dtype other than kBFloat16 / kHalf (kFloat: "off") leaves autocast as it is, so callers can pass a
// setting straight through. Run backward() outside the guard, as with torch.autocast.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device_type, at::ScalarType dtype) : device_type_(device_type) {
    if (dtype != at::kBFloat16 && dtype != at::kHalf) return;
    active_ = true;
    prev_enabled_ = at::autocast::is_autocast_enabled(device_type_);
    prev_dtype_ = at::autocast::get_autocast_dtype(device_type_);
    at::autocast::set_autocast_enabled(device_type_, true);
    at::autocast::set_autocast_dtype(device_type_, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    // As torch.autocast's __exit__: the cast-weight cache lives until the outermost region ends.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_type_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_type_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

  bool active() const { return active_; }  // false: the dtype asked for no autocast

 private:
  c10::DeviceType device_type_;
  bool active_ = false;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

}  // namespace clipguide
