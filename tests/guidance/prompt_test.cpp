// Tests for guidance/prompt: VQGAN+CLIP's "text:weight:stop" syntax, paths with ':' and malformed specs.
#include "guidance/prompt.h"

#include "core/error.h"

#include <gtest/gtest.h>

#include <cmath>

namespace clipguide::guidance {
namespace {

TEST(ParsePrompt, TextWeightStop) {
  auto p = parse_prompt("a red circle:1.5:-0.2");
  EXPECT_EQ(p.text, "a red circle");
  EXPECT_DOUBLE_EQ(p.weight, 1.5);
  EXPECT_DOUBLE_EQ(p.stop, -0.2);
  p = parse_prompt("  a cat  ");
  EXPECT_EQ(p.text, "a cat");
  EXPECT_DOUBLE_EQ(p.weight, 1.0);
  EXPECT_TRUE(std::isinf(p.stop) && p.stop < 0);
  p = parse_prompt("rainbow:-1");
  EXPECT_EQ(p.text, "rainbow");
  EXPECT_DOUBLE_EQ(p.weight, -1.0);
  p = parse_prompt("x:2e-1:-inf");
  EXPECT_DOUBLE_EQ(p.weight, 0.2);
}

TEST(ParsePrompt, ColonsInsideTextAndPathsAreKept) {
  auto p = parse_prompt("http://example.com/a.png:2");
  EXPECT_EQ(p.text, "http://example.com/a.png");
  EXPECT_DOUBLE_EQ(p.weight, 2.0);
  p = parse_prompt("C:\\images\\cat.jpg");
  EXPECT_EQ(p.text, "C:\\images\\cat.jpg");
  p = parse_prompt("ratio 16:9 poster");
  EXPECT_EQ(p.text, "ratio 16:9 poster");
  p = parse_prompt("text:abc");  // a word after ':' with no weight before it: text (documented)
  EXPECT_EQ(p.text, "text:abc");
  EXPECT_DOUBLE_EQ(p.weight, 1.0);
  p = parse_prompt("clock at 10:30 sharp");
  EXPECT_EQ(p.text, "clock at 10:30 sharp");
  p = parse_prompt("time 10:30:0.5");  // the last number is the weight, the rest is text
  EXPECT_EQ(p.text, "time 10");
  EXPECT_DOUBLE_EQ(p.weight, 30.0);
  EXPECT_DOUBLE_EQ(p.stop, 0.5);
}

TEST(ParsePrompt, MalformedSpecsAreErrors) {
  for (std::string bad : {"", "   ", ":1", ":1:0", "a:nan", "a:inf", "a:1:inf", "a:1:nan", ":", "::", "a cat:", "a:1:",
                          "a cat:1:abc", "x:2:y"}) {
    EXPECT_THROW(parse_prompt(bad), Error) << "'" << bad << "'";
  }
  try {
    parse_prompt(":2");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("':2'"), std::string::npos) << e.what();
  }
  try {
    parse_prompt("a cat:1:abc");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'abc' after the weight 1 is not a number"), std::string::npos) << e.what();
  }
}

TEST(ParsePrompts, SplitsOnBars) {
  auto ps = parse_prompts("a red circle | a blue sky:0.5|noise:-1:0.1");
  ASSERT_EQ(ps.size(), 3u);
  EXPECT_EQ(ps[0].text, "a red circle");
  EXPECT_EQ(ps[1].text, "a blue sky");
  EXPECT_DOUBLE_EQ(ps[1].weight, 0.5);
  EXPECT_DOUBLE_EQ(ps[2].weight, -1.0);
  EXPECT_DOUBLE_EQ(ps[2].stop, 0.1);
  EXPECT_TRUE(parse_prompts("").empty());
  EXPECT_THROW(parse_prompts("a||b"), Error);
  EXPECT_THROW(parse_prompts("a|"), Error);
}

}  // namespace
}  // namespace clipguide::guidance
