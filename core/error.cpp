// Formatting helpers for clipguide::Error messages.
#include "core/error.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace clipguide {

std::string shape_str(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

std::string error_text(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

}  // namespace clipguide
