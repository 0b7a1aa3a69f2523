// Prompt parsing (see prompt.h). ref: nerdyrodent/VQGAN-CLIP generate.py split_prompt, extended so that
// ':' inside a text or path is kept unless what follows is a number.
#include "guidance/prompt.h"

#include "core/error.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>

namespace clipguide::guidance {
namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// The whole of `s` as a number, or nothing ("1e-3", "-inf" and " 2 " are numbers; "", "2x", "//a" are not).
std::optional<double> as_number(const std::string& s) {
  std::string t = trim(s);
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || errno == ERANGE) return std::nullopt;
  return v;
}

}  // namespace

PromptSpec parse_prompt(const std::string& spec) {
  PromptSpec out;
  std::string rest = spec;
  // A spec ending in ':' has an empty weight ("a cat:", ":"), never text.
  if (auto colon = rest.rfind(':'); colon != std::string::npos && trim(rest.substr(colon + 1)).empty()) {
    throw Error("prompt '" + spec + "': nothing after the last ':' (expected a weight: 'text:weight[:stop]')");
  }
  std::vector<double> numbers;  // trailing numbers, last first
  while (numbers.size() < 2) {
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) break;
    auto number = as_number(rest.substr(colon + 1));
    if (!number) break;
    numbers.push_back(*number);
    rest = rest.substr(0, colon);
  }
  out.text = trim(rest);
  if (out.text.empty()) throw Error("prompt '" + spec + "': the text (or image path) is empty");
  // "a cat:1:abc": a number in the weight position followed by a word with no space or path separator is a
  // mistyped stop, not text ("10:30 clock", "C:\\x" and URLs stay text).
  if (numbers.empty()) {
    const auto last = rest.rfind(':');
    const auto before = last == std::string::npos ? std::string::npos : rest.rfind(':', last - 1);
    if (last != std::string::npos) {
      const std::string tail = rest.substr(last + 1);
      const std::string middle = rest.substr(before == std::string::npos ? 0 : before + 1, last - (before == std::string::npos ? 0 : before + 1));
      if (as_number(middle) && before != std::string::npos && tail.find_first_of(" \t/\\") == std::string::npos) {
        throw Error("prompt '" + spec + "': '" + tail + "' after the weight " + trim(middle) +
                    " is not a number (expected 'text:weight:stop')");
      }
    }
  }
  if (numbers.size() == 2) {
    out.weight = numbers[1];
    out.stop = numbers[0];
  } else if (numbers.size() == 1) {
    out.weight = numbers[0];
  }
  if (!std::isfinite(out.weight)) throw Error("prompt '" + spec + "': the weight must be a finite number");
  if (std::isnan(out.stop) || out.stop == std::numeric_limits<double>::infinity()) {
    throw Error("prompt '" + spec + "': the stop must be a number below +inf");
  }
  return out;
}

std::vector<PromptSpec> parse_prompts(const std::string& specs) {
  std::vector<PromptSpec> out;
  if (trim(specs).empty()) return out;
  size_t start = 0;
  while (true) {
    auto bar = specs.find('|', start);
    std::string piece = specs.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    if (trim(piece).empty()) throw Error("prompts '" + specs + "': empty prompt between '|' separators");
    out.push_back(parse_prompt(piece));
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  return out;
}

}  // namespace clipguide::guidance
