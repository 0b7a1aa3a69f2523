// Tests for clipnet/text_clean: known cases of ftfy.fix_text, html.unescape and the whole cleaning, and parity
// with Python's whitespace_clean(basic_clean(text)).lower() on the tokenizer fixture's corpus.
#include "clipnet/text_clean.h"

#include "core/error.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

namespace clipguide::clipnet {
namespace {

using test::escaped;

TEST(HtmlUnescape, MatchesPythonRules) {
  EXPECT_EQ(html_unescape("&amp; &lt;b&gt;"), "& <b>");
  EXPECT_EQ(html_unescape("&amp"), "&");                      // legacy name without ';'
  EXPECT_EQ(html_unescape("&ampx;"), "&x;");                  // longest-prefix rule
  EXPECT_EQ(html_unescape("&notit;"), "\u00ACit;");
  EXPECT_EQ(html_unescape("&notin;"), "\u2209");
  EXPECT_EQ(html_unescape("&foo;"), "&foo;");
  EXPECT_EQ(html_unescape("&#65;&#x42;&#X43;"), "ABC");
  EXPECT_EQ(html_unescape("&#128;&#x9F;"), "\u20AC\u0178");    // windows-1252 table
  EXPECT_EQ(html_unescape("&#129;"), "\u0081");
  EXPECT_EQ(html_unescape("&#0;"), "\uFFFD");
  EXPECT_EQ(html_unescape("&#xD800;&#x110000;&#99999999999999999999;"), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(html_unescape("a&#1;b&#xFFFF;c"), "abc");           // invalid code points vanish
  EXPECT_EQ(html_unescape("&#13;"), "\r");
  EXPECT_EQ(html_unescape("&#;&#x;&#xg;"), "&#;&#x;&#xg;");
  EXPECT_EQ(html_unescape("&#x41"), "A");
  EXPECT_EQ(html_unescape("&NotEqualTilde;"), "\u2242\u0338");  // two code points
  EXPECT_EQ(html_unescape("&amp;amp;"), "&amp;");               // one level only
}

TEST(FixText, AppliesFtfyDefaults) {
  EXPECT_EQ(fix_text("the \uFB01rst \uFB02oor"), "the first floor");
  EXPECT_EQ(fix_text("\uFF2C\uFF2F\uFF35\uFF24\u3000\uFF2E\uFF2F\uFF29\uFF33\uFF25\uFF33"), "LOUD NOISES");
  EXPECT_EQ(fix_text("\u2018a\u2019 \u201Cb\u201D \u02BC"), "'a' \"b\" '");
  EXPECT_EQ(fix_text("Broken text&hellip; it&#x2019;s \uFB02ubberi\uFB01c!"), "Broken text\u2026 it's flubberific!");
  EXPECT_EQ(fix_text("&lt;b&gt;"), "<b>");
  EXPECT_EQ(fix_text("<b>&amp;</b>"), "<b>&amp;</b>");           // real HTML: entities kept
  EXPECT_EQ(fix_text("&amp;\n<\n&amp;"), "&\n<\n&amp;");         // off from the first line with '<' on
  EXPECT_EQ(fix_text("P&EACUTE;REZ &nTILDE;"), "P\u00C9REZ &nTILDE;");
  EXPECT_EQ(fix_text("&amp;amp;amp;"), "&");                     // repeated until nothing changes
  EXPECT_EQ(fix_text("&#59;"), "&#59;");                         // would leave a ';': ftfy keeps the reference
  EXPECT_EQ(fix_text("\x1b[36;44mblue\x1b[0m"), "blue");
  EXPECT_EQ(fix_text("a\r\nb\rc\u2028d"), "a\nb\nc\nd");
  EXPECT_EQ(fix_text("cafe\u0301"), "caf\u00E9");
  EXPECT_EQ(fix_text("\u0085 \u0091x\u0092"), "\u2026 'x'");     // C1 controls as windows-1252
  EXPECT_EQ(fix_text(std::string("a\0b\x0b" "c\x7f\uFEFF", 9)), "abc");
  EXPECT_EQ(fix_text("\u0149"), "'n");
  EXPECT_EQ(fix_text("\uFF76\uFF9E"), "\u30AC");                 // halfwidth katakana + voiced mark, composed
}

TEST(CleanText, WhitespaceAndCase) {
  EXPECT_EQ(clean_text("  Hello\t\tWORLD \n"), "hello world");
  EXPECT_EQ(clean_text("a\u00A0\u3000\u2003b"), "a b");
  EXPECT_EQ(clean_text("\u039F\u0394\u039F\u03A3 \u03A3"), "\u03BF\u03B4\u03BF\u03C2 \u03C3");  // final sigma
  EXPECT_EQ(clean_text("\u0130"), "i\u0307");
  EXPECT_EQ(clean_text("&amp;amp;lt;"), "<");
  EXPECT_EQ(clean_text(""), "");
}

TEST(CleanText, InvalidUtf8NamesTheOffset) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      clean_text(text);
      ADD_FAILURE() << "no error for " << escaped(text);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("ab\xff", "byte offset 2");
  expect_error("caf\xc3", "byte offset 3");
  expect_error("x\xc0\xaf", "byte offset 1");
  expect_error("x\xe0\x80\xaf", "overlong");
  expect_error("\xed\xa0\x80", "surrogate");
  expect_error("\xf4\x90\x80\x80", "above U+10FFFF");
  expect_error("ok \xe2\x82 x", "byte offset 3");
}

// Every corpus string cleans exactly as Python's whitespace_clean(basic_clean(text)).lower().
TEST(CleanText, ParityWithPython) {
  const auto dir = test::fixture_dir("tokenizer");
  std::ifstream in(dir / "corpus.json");
  ASSERT_TRUE(in) << "cannot open " << (dir / "corpus.json");
  const auto corpus = nlohmann::json::parse(in);
  size_t mismatches = 0, total = 0;
  for (const auto& item : corpus["items"]) {
    const std::string text = item["text"].get<std::string>();
    const std::string expected = item["clean"].get<std::string>();
    ++total;
    const std::string got = clean_text(text);
    if (got != expected && ++mismatches <= 20) {
      ADD_FAILURE() << "text     " << escaped(text) << "\n  got      " << escaped(got) << "\n  expected " << escaped(expected);
    }
  }
  std::cout << "  [clean_text parity: " << total << " strings, " << mismatches << " mismatches]\n";
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GE(total, 2000u);
}

}  // namespace
}  // namespace clipguide::clipnet
