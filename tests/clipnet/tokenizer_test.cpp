// Tests for clipnet/tokenizer: known ids, decode, clip.tokenize's padding/truncation/errors, bad vocabulary files,
// invalid UTF-8, threads, and parity with openai-clip's SimpleTokenizer on the fixture corpus for every file layout.
#include "clipnet/tokenizer.h"

#include "core/error.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace clipguide::clipnet {
namespace {

using test::escaped;

namespace fs = std::filesystem;

std::string ids_str(const std::vector<int64_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

// OpenAI's vocabulary, carried in the repository (tests/data/openai-clip).
fs::path openai_vocab() { return test::openai_vocabulary(); }

#define REQUIRE_VOCAB() ASSERT_TRUE(fs::exists(openai_vocab())) << openai_vocab()

const Tokenizer& openai_tokenizer() {
  static const Tokenizer tok = Tokenizer::from_file(openai_vocab());
  return tok;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

TEST(Tokenizer, KnownIds) {
  REQUIRE_VOCAB();
  const Tokenizer& tok = openai_tokenizer();
  EXPECT_EQ(tok.sot_token(), 49406);
  EXPECT_EQ(tok.eot_token(), 49407);
  EXPECT_EQ(tok.vocab_size(), 49408);
  EXPECT_EQ(tok.encode("a photo of a cat"), (std::vector<int64_t>{320, 1125, 539, 320, 2368}));
  EXPECT_EQ(tok.encode("A  PHOTO\tof a CAT!!"), (std::vector<int64_t>{320, 1125, 539, 320, 2368, 748}));
  EXPECT_EQ(tok.encode("<|endoftext|>"), (std::vector<int64_t>{49407}));
  EXPECT_EQ(tok.encode(""), (std::vector<int64_t>{}));
}

TEST(Tokenizer, DecodeRoundTrip) {
  REQUIRE_VOCAB();
  const Tokenizer& tok = openai_tokenizer();
  EXPECT_EQ(tok.decode(tok.encode("a photo of a cat")), "a photo of a cat ");
  EXPECT_EQ(tok.decode(tok.encode("Ελληνικά 日本語 🐱")), "ελληνικά 日本語 🐱 ");
  EXPECT_EQ(tok.decode({tok.sot_token(), 320, tok.eot_token()}), "<|startoftext|>a <|endoftext|>");
  // A byte token that is half a UTF-8 sequence decodes to U+FFFD, as Python's errors="replace".
  EXPECT_EQ(tok.decode({127}), "\uFFFD");  // 127: byte 0xC3
  EXPECT_EQ(tok.decode({127, 320}), "\uFFFDa ");
  EXPECT_NE(error_of([&] { tok.decode({49408}); }).find("49408"), std::string::npos);
  EXPECT_NE(error_of([&] { tok.decode({-1}); }).find("outside"), std::string::npos);
}

TEST(Tokenizer, TokenizePadsAndTruncates) {
  REQUIRE_VOCAB();
  const Tokenizer& tok = openai_tokenizer();
  at::Tensor t = tok.tokenize({"a photo of a cat", ""});  // (2, 77)
  ASSERT_EQ(t.dim(), 2);
  EXPECT_EQ(t.size(0), 2);
  EXPECT_EQ(t.size(1), 77);
  EXPECT_EQ(t.scalar_type(), at::kLong);
  std::vector<int64_t> row0(t[0].data_ptr<int64_t>(), t[0].data_ptr<int64_t>() + 8);
  EXPECT_EQ(row0, (std::vector<int64_t>{49406, 320, 1125, 539, 320, 2368, 49407, 0}));
  EXPECT_EQ(t[1][0].item<int64_t>(), 49406);
  EXPECT_EQ(t[1][1].item<int64_t>(), 49407);
  EXPECT_EQ(t.sum().item<int64_t>(), 49406 * 2 + 49407 * 2 + 320 + 1125 + 539 + 320 + 2368);

  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "cat ";
  const std::string msg = error_of([&] { tok.tokenize({"short", long_text}); });
  EXPECT_NE(msg.find("text 1 \"cat cat cat cat cat cat cat cat cat cat ...\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("102 tokens"), std::string::npos) << msg;
  EXPECT_NE(msg.find("77"), std::string::npos) << msg;

  at::Tensor cut = tok.tokenize({long_text}, 77, /*truncate=*/true);
  EXPECT_EQ(cut[0][0].item<int64_t>(), 49406);
  EXPECT_EQ(cut[0][76].item<int64_t>(), 49407);
  EXPECT_EQ(cut[0][75].item<int64_t>(), 2368);
  at::Tensor tiny = tok.tokenize({"a photo"}, 1, true);
  EXPECT_EQ(tiny[0][0].item<int64_t>(), 49407);
  EXPECT_NE(error_of([&] { tok.tokenize({"x"}, 0); }).find("context_length"), std::string::npos);
}

TEST(Tokenizer, InvalidUtf8NamesTheOffset) {
  REQUIRE_VOCAB();
  const std::string msg = error_of([] { openai_tokenizer().encode("a cat\xff"); });
  EXPECT_NE(msg.find("invalid UTF-8 at byte offset 5"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { openai_tokenizer().tokenize({"ok", "\xc3("}); }).find("byte offset 0"), std::string::npos);
}

TEST(Tokenizer, BadFiles) {
  const fs::path dir = test::temp_dir();
  EXPECT_NE(error_of([&] { Tokenizer::from_file(dir / "missing.txt.gz"); }).find("missing.txt.gz"), std::string::npos);
  EXPECT_NE(error_of([&] { Tokenizer::from_file(dir); }).find("holds no vocabulary"), std::string::npos);

  write_file(dir / "bad_merges.txt", "#version\ni n\nt h e\n");
  std::string msg = error_of([&] { Tokenizer::from_file(dir / "bad_merges.txt"); });
  EXPECT_NE(msg.find("bad_merges.txt line 3"), std::string::npos) << msg;

  write_file(dir / "header_only.txt", "#version: 0.2\n");
  msg = error_of([&] { Tokenizer::from_file(dir / "header_only.txt"); });
  EXPECT_NE(msg.find("no BPE merges"), std::string::npos) << msg;

  const fs::path hf = dir / "hf";
  fs::create_directories(hf);
  write_file(hf / "vocab.json", "{\"a\": 0}");
  msg = error_of([&] { Tokenizer::from_file(hf / "vocab.json"); });
  EXPECT_NE(msg.find("merges.txt"), std::string::npos) << msg;
  write_file(hf / "merges.txt", "#version: 0.2\na b\n");
  msg = error_of([&] { Tokenizer::from_file(hf); });
  EXPECT_NE(msg.find("lacks the byte-level token"), std::string::npos) << msg;
  write_file(hf / "vocab.json", "{\"a\": ");
  msg = error_of([&] { Tokenizer::from_file(hf / "merges.txt"); });
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;

  write_file(dir / "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
  msg = error_of([&] { Tokenizer::from_file(dir / "tokenizer.json"); });
  EXPECT_NE(msg.find("expected \"BPE\""), std::string::npos) << msg;
  write_file(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [\"a b\", 3]}}");
  msg = error_of([&] { Tokenizer::from_file(dir / "tokenizer.json"); });
  EXPECT_NE(msg.find("model.merges[1]"), std::string::npos) << msg;

  write_file(dir / "not_utf8.txt", "#version\n\xff\xfe x\n");
  msg = error_of([&] { Tokenizer::from_file(dir / "not_utf8.txt"); });
  EXPECT_NE(msg.find("invalid UTF-8"), std::string::npos) << msg;
}

// OpenAI's vocabulary cut mid-stream (no end-of-stream marker, no trailer) and with its CRC damaged: both
// errors naming the file, never a silently shorter vocabulary.
TEST(Tokenizer, CutOrDamagedGzipIsAnError) {
  const fs::path dir = test::temp_dir();
  std::ifstream in(openai_vocab(), std::ios::binary);
  const std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(gz.size(), 1000u);
  write_file(dir / "cut.txt.gz", gz.substr(0, gz.size() / 2));
  std::string msg = error_of([&] { Tokenizer::from_file(dir / "cut.txt.gz"); });
  EXPECT_NE(msg.find("cut.txt.gz is cut short or damaged"), std::string::npos) << msg;
  std::string damaged = gz;
  damaged[damaged.size() - 6] ^= 0x55;  // inside the trailer's CRC-32
  write_file(dir / "crc.txt.gz", damaged);
  msg = error_of([&] { Tokenizer::from_file(dir / "crc.txt.gz"); });
  EXPECT_NE(msg.find("crc.txt.gz"), std::string::npos) << msg;
  EXPECT_EQ(Tokenizer::from_file(openai_vocab()).vocab_size(), 49408);
}

TEST(Tokenizer, MergeOutsideVocabulary) {
  // A byte-level vocabulary whose merges name a symbol it lacks: the error gives the merges line.
  const fs::path dir = test::temp_dir();
  nlohmann::json vocab = nlohmann::json::object();
  write_file(dir / "merges.txt", "#version: 0.2\ni n\nzz q\n");
  // bytes_to_unicode: printable ASCII stands for itself; the other bytes are U+0100 onwards.
  std::vector<std::string> byte_chars;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    uint32_t c = direct ? uint32_t(b) : uint32_t(256 + n++);
    std::string s;
    if (c < 0x80) {
      s.push_back(char(c));
    } else {
      s.push_back(char(0xC0 | (c >> 6)));
      s.push_back(char(0x80 | (c & 0x3F)));
    }
    byte_chars.push_back(s);
  }
  int64_t id = 0;
  for (const auto& s : byte_chars) vocab[s] = id++;
  for (const auto& s : byte_chars) vocab[s + "</w>"] = id++;
  vocab["in"] = id++;
  vocab["<|startoftext|>"] = id++;
  vocab["<|endoftext|>"] = id++;
  write_file(dir / "vocab.json", vocab.dump());
  const std::string msg = error_of([&] { Tokenizer::from_file(dir / "vocab.json"); });
  EXPECT_NE(msg.find("merges.txt line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"zz\""), std::string::npos) << msg;
}

// ------------------------------------------------------------------------------------------------
// parity with openai-clip's SimpleTokenizer
// ------------------------------------------------------------------------------------------------

struct Fixture {
  fs::path dir;
  nlohmann::json corpus;
  nlohmann::json readers;
};

const Fixture* load_fixture() {
  static Fixture f;
  static bool loaded = false;
  if (!loaded) {
    loaded = true;
    f.dir = test::fixture_dir("tokenizer");
    std::ifstream c(f.dir / "corpus.json"), r(f.dir / "readers.json");
    if (!c || !r) return nullptr;
    f.corpus = nlohmann::json::parse(c);
    f.readers = nlohmann::json::parse(r);
  }
  return f.corpus.is_null() ? nullptr : &f;
}

#define REQUIRE_FIXTURE(var)                                                                                           \
  REQUIRE_VOCAB();                                                                                                     \
  const Fixture* var = load_fixture();                                                                                 \
  ASSERT_NE(var, nullptr) << "tokenizer fixture incomplete (corpus.json, readers.json)"

TEST(TokenizerParity, IdsMatchSimpleTokenizerForEveryReader) {
  REQUIRE_FIXTURE(fx);
  const auto& items = fx->corpus["items"];
  ASSERT_GE(items.size(), 2000u);
  std::cout << "  [corpus: " << items.size() << " strings, " << fx->corpus["excluded_mojibake"].get<int>()
            << " left out as mojibake]\n";
  ASSERT_GE(fx->readers.size(), 7u);
  for (const auto& reader : fx->readers) {
    const std::string name = reader["name"].get<std::string>();
    const fs::path path = reader["path"].get<std::string>();
    SCOPED_TRACE("reader " + name + ": " + path.string());
    Tokenizer tok = Tokenizer::from_file(path);
    EXPECT_EQ(tok.vocab_size(), 49408);
    EXPECT_EQ(tok.sot_token(), 49406);
    EXPECT_EQ(tok.eot_token(), 49407);
    size_t mismatches = 0;
    for (const auto& item : items) {
      const std::string text = item["text"].get<std::string>();
      const auto expected = item["ids"].get<std::vector<int64_t>>();
      const auto got = tok.encode(text);
      if (got != expected && ++mismatches <= 20) {
        ADD_FAILURE() << "text     " << escaped(text) << "\n  got      " << ids_str(got) << "\n  expected " << ids_str(expected);
      }
    }
    std::cout << "  [" << name << ": " << items.size() << " strings, " << mismatches << " mismatches]\n";
    EXPECT_EQ(mismatches, 0u);
  }
}

TEST(TokenizerParity, DecodeMatchesSimpleTokenizer) {
  REQUIRE_FIXTURE(fx);
  const Tokenizer& tok = openai_tokenizer();
  size_t mismatches = 0;
  for (const auto& item : fx->corpus["items"]) {
    const std::string expected = item["decoded"].get<std::string>();
    const std::string got = tok.decode(item["ids"].get<std::vector<int64_t>>());
    if (got != expected && ++mismatches <= 20) {
      ADD_FAILURE() << "text " << escaped(item["text"].get<std::string>()) << "\n  got      " << escaped(got) << "\n  expected "
                    << escaped(expected);
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST(TokenizerParity, TruncateMatchesClipTokenize) {
  REQUIRE_FIXTURE(fx);
  const Tokenizer& tok = openai_tokenizer();
  ASSERT_FALSE(fx->corpus["truncate"].empty());
  for (const auto& item : fx->corpus["truncate"]) {
    const std::string text = item["text"].get<std::string>();
    const int64_t L = item["context_length"].get<int64_t>();
    const auto expected = item["row"].get<std::vector<int64_t>>();
    at::Tensor row = tok.tokenize({text}, L, true)[0];
    std::vector<int64_t> got(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + L);
    EXPECT_EQ(got, expected) << "text " << escaped(text) << " L=" << L;
    EXPECT_THROW(tok.tokenize({text}, L, false), Error);
  }
}

// Each code point is split the way the `regex` module's \p{L}, \p{N}, \s see it with IGNORECASE.
TEST(TokenizerParity, CharacterClassesMatchRegexModule) {
  REQUIRE_FIXTURE(fx);
  std::ifstream in(fx->dir / "classes.txt", std::ios::binary);
  std::string classes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(classes.size(), 0x110000u);
  size_t mismatches = 0;
  for (char32_t c = 0; c < 0x110000; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    const char got = detail::pretoken_class(c);
    if (got != classes[c] && ++mismatches <= 20) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(c));
      ADD_FAILURE() << buf << ": got '" << got << "', expected '" << classes[c] << "'";
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST(TokenizerParity, ThreadsGetTheSameIds) {
  REQUIRE_FIXTURE(fx);
  Tokenizer tok = Tokenizer::from_file(openai_vocab());  // fresh cache: threads race to fill it
  const auto& items = fx->corpus["items"];
  std::vector<std::string> texts;
  std::vector<std::vector<int64_t>> expected;
  for (const auto& item : items) {
    texts.push_back(item["text"].get<std::string>());
    expected.push_back(item["ids"].get<std::vector<int64_t>>());
  }
  std::vector<size_t> failures(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([&, t] {
      for (size_t k = 0; k < texts.size(); ++k) {
        size_t i = (k * (t + 1) * 7919) % texts.size();  // different orders per thread
        if (tok.encode(texts[i]) != expected[i]) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < failures.size(); ++t) EXPECT_EQ(failures[t], 0u) << "thread " << t;
}

TEST(TokenizerParity, Pretokenize) {
  EXPECT_EQ(detail::pretokenize("it's a cat!!<|endoftext|>"),
            (std::vector<std::string>{"it", "'s", "a", "cat", "!!<|", "endoftext", "|>"}));
  EXPECT_EQ(detail::pretokenize("<|endoftext|>x 42 'll"), (std::vector<std::string>{"<|endoftext|>", "x", "4", "2", "'ll"}));
  EXPECT_EQ(detail::pretokenize("it'\xc5\xbft ab\xcd\x85" "c"), (std::vector<std::string>{"it", "'\xc5\xbf", "t", "ab", "c"}));
}

}  // namespace
}  // namespace clipguide::clipnet
