// Prompts as VQGAN+CLIP users write them: "text[:weight[:stop]]", several joined by '|'; image prompts
// "path[:weight[:stop]]" whose path may itself contain ':' (URLs, drive letters). A negative weight pushes
// the image away from the prompt; stop is the distance below which the prompt stops pulling.
#pragma once

#include <limits>
#include <string>
#include <vector>

namespace clipguide::guidance {

struct PromptSpec {
  std::string text;                                        // the text, or the image path for image prompts
  double weight = 1.0;                                     // sign: towards (+) or away (-); magnitude: strength
  double stop = -std::numeric_limits<double>::infinity();  // spherical distance below which the pull stops
};

// One prompt: "a red circle:1.5:-0.2" → {"a red circle", 1.5, -0.2}. Up to two trailing ':'-separated
// numbers are weight and stop; a ':' followed by anything else stays in the text ("http://x/y.png:2" →
// path "http://x/y.png", weight 2; "style:cyberpunk" and "ratio 16:9 poster" are texts). Throws
// clipguide::Error naming the spec when the text is empty, the spec ends in ':' (an empty weight), a
// number is not finite, or a word follows a weight in the stop position ("a cat:1:abc").
PromptSpec parse_prompt(const std::string& spec);

// "a|b:2|c" → three prompts; empty pieces are errors ("a||b"). An empty string gives no prompts.
std::vector<PromptSpec> parse_prompts(const std::string& specs);

}  // namespace clipguide::guidance
