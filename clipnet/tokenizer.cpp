// OpenAI CLIP's byte-level BPE tokenizer (see tokenizer.h). LibTorch appears only in tokenize(); the rest works
// on UTF-8 bytes and int32 ids.
// [SECTION] character classes and the word scanner  [SECTION] vocabulary files  [SECTION] BPE and the cache
// [SECTION] Tokenizer
#include "clipnet/tokenizer.h"

#include "clipnet/text_clean.h"
#include "clipnet/utf8.h"
#include "core/error.h"

#include <ATen/ops/zeros.h>
#include <nlohmann/json.hpp>
#include <unicode/uchar.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <utility>

namespace clipguide::clipnet {
namespace {

// ============================================================================================
// [SECTION] character classes and the word scanner
// ============================================================================================

struct ClassOverride {
  char32_t first;
  char32_t last;
  bool is_letter;
};
#include "clipnet/unicode_overrides.inc"

// `regex`'s \s (White_Space); after clean_text only ' ' is left, but the scanner does not rely on that.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

char classify(char32_t c) {
  if (is_white_space(c)) return 'S';
  // U+0345 COMBINING GREEK YPOGEGRAMMENI (Mn) case-folds to ι: with IGNORECASE, `regex` lets it match neither
  // [\p{L}] nor the negated [^\s\p{L}\p{N}], so the pattern skips it like a space.
  if (c == 0x345) return '-';
  const ClassOverride* it = std::lower_bound(std::begin(kClassOverrides), std::end(kClassOverrides), c,
                                             [](const ClassOverride& o, char32_t x) { return o.last < x; });
  if (it != std::end(kClassOverrides) && it->first <= c) return it->is_letter ? 'L' : 'N';
  uint32_t mask = U_MASK(u_charType(static_cast<UChar32>(c)));
  if (mask & U_GC_L_MASK) return 'L';
  if (mask & U_GC_N_MASK) return 'N';
  return 'O';
}

// Classes of the Basic Multilingual Plane, computed once; other planes ask ICU each time.
const std::array<char, 0x10000>& bmp_classes() {
  static const auto table = [] {
    std::array<char, 0x10000> t;
    for (char32_t c = 0; c < 0x10000; ++c) t[c] = (c >= 0xD800 && c <= 0xDFFF) ? 'O' : classify(c);
    return t;
  }();
  return table;
}

char class_of(char32_t c) { return c < 0x10000 ? bmp_classes()[c] : classify(c); }

// Next code point of valid UTF-8 at s[i]; sets `len`.
char32_t next_code_point(std::string_view s, size_t i, size_t& len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  unsigned char b = p[0];
  if (b < 0x80) return len = 1, b;
  if (b < 0xE0) return len = 2, ((b & 0x1F) << 6) | (p[1] & 0x3F);
  if (b < 0xF0) return len = 3, ((b & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  return len = 4, ((b & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

// Matches the ASCII literal `lit` at s[i] the way `regex` does with IGNORECASE (simple case folding): letters in
// either case, and 's' also as U+017F LATIN SMALL LETTER LONG S. Returns the end offset or npos.
size_t match_literal(std::string_view s, size_t i, std::string_view lit) {
  for (char l : lit) {
    if (i >= s.size()) return std::string_view::npos;
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (b == static_cast<unsigned char>(l) || (l >= 'a' && l <= 'z' && b == static_cast<unsigned char>(l - 32))) {
      ++i;
    } else if (l == 's' && b == 0xC5 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xBF) {
      i += 2;
    } else {
      return std::string_view::npos;
    }
  }
  return i;
}

// Calls emit(begin, end) for each match of OpenAI's pattern, in order:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+   (IGNORECASE)
// Alternatives are tried in that order at each position; a position where none matches is skipped.
template <class Emit>
void scan_words(std::string_view s, Emit&& emit) {
  static constexpr std::string_view kSpecials[] = {"<|startoftext|>", "<|endoftext|>"};
  static constexpr std::string_view kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    size_t len;
    char32_t c = next_code_point(s, i, len);
    size_t end = std::string_view::npos;
    if (c == U'<') {
      for (auto lit : kSpecials) {
        if ((end = match_literal(s, i, lit)) != std::string_view::npos) break;
      }
    } else if (c == U'\'') {
      for (auto lit : kContractions) {
        if ((end = match_literal(s, i, lit)) != std::string_view::npos) break;
      }
    }
    if (end != std::string_view::npos) {
      emit(i, end);
      i = end;
      continue;
    }
    const char cls = class_of(c);
    if (cls == 'S' || cls == '-') {
      i += len;
      continue;
    }
    end = i + len;
    if (cls != 'N') {  // [\p{L}]+ and [^\s\p{L}\p{N}]+ are greedy runs; [\p{N}] is one code point
      while (end < n) {
        size_t l2;
        char32_t d = next_code_point(s, end, l2);
        if (class_of(d) != cls) break;
        end += l2;
      }
    }
    emit(i, end);
    i = end;
  }
}

// ref: openai/CLIP simple_tokenizer.py bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// other 68 bytes for U+0100 onwards.
std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> table{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  int n = 0;
  for (int b = 0; b < 256; ++b) table[b] = direct[b] ? char32_t(b) : char32_t(256 + n++);
  return table;
}

// The bytes in bytes_to_unicode's order (the order of OpenAI's first 256 vocabulary entries).
std::vector<int> bytes_in_vocab_order() {
  std::vector<int> order;
  for (int b = '!'; b <= '~'; ++b) order.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) order.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) order.push_back(b);
  for (int b = 0; b < 256; ++b) {
    if (std::find(order.begin(), order.end(), b) == order.end()) order.push_back(b);
  }
  return order;
}

// The length of the maximal subpart of an ill-formed sequence at the start of `s` (Unicode's definition, which
// Python's decoder follows): the lead byte and the continuation bytes that could still have completed it.
size_t ill_formed_length(std::string_view s) {
  const auto b = static_cast<unsigned char>(s[0]);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    len = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    len = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    len = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  }
  size_t k = 1;
  for (; k < len && k < s.size(); ++k) {
    const auto c = static_cast<unsigned char>(s[k]);
    if (k == 1 ? (c < lo || c > hi) : (c & 0xC0) != 0x80) break;
  }
  return k;
}

// Python's bytes.decode('utf-8', errors='replace'): one U+FFFD per maximal ill-formed subsequence.
std::string utf8_replace_invalid(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const char* why = "";
  for (size_t at; (at = utf8_error(s, &why)) != std::string_view::npos;) {
    out.append(s.substr(0, at));
    out += "\xEF\xBF\xBD";
    s.remove_prefix(at + ill_formed_length(s.substr(at)));
  }
  out.append(s);
  return out;
}

// ============================================================================================
// [SECTION] vocabulary files
// ============================================================================================

// Vocabulary as read from a file: token strings (byte-level alphabet) with ids, and merges in rank order.
struct VocabSource {
  std::filesystem::path file;                      // for error messages
  std::vector<std::pair<std::string, int64_t>> tokens;  // in file order; a repeated string keeps the last id
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<int64_t> merge_lines;                // 1-based line (or array index) of each merge, for errors
  std::filesystem::path merges_file;
};

std::string read_text_file(const std::filesystem::path& path) {
  // zlib reads gzip and plain files alike.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error("tokenizer: cannot open " + path.string());
  std::string data;
  char buf[1 << 16];
  while (true) {
    int got = gzread(f, buf, sizeof buf);
    if (got < 0) {
      int code = 0;
      std::string why = gzerror(f, &code);
      gzclose(f);
      throw Error("tokenizer: cannot read " + path.string() + ": " + why);
    }
    if (got == 0) break;
    data.append(buf, static_cast<size_t>(got));
  }
  // A gzip stream that ends before its end-of-stream marker and trailer (a cut file) reads as a clean end
  // of file; zlib reports it only here.
  int code = Z_OK;
  const std::string why = gzerror(f, &code);
  gzclose(f);
  if (code != Z_OK) {
    throw Error("tokenizer: " + path.string() + " is cut short or damaged (" + why +
                "): the gzip stream has no proper end, so the vocabulary would be incomplete");
  }
  try {
    check_utf8(data);
  } catch (const Error& e) {
    throw Error("tokenizer: " + path.string() + ": " + e.what());
  }
  return data;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (true) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {
      lines.push_back(text.substr(pos));
      break;
    }
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

// "a b" -> {a, b}; Python's str.split() on ASCII whitespace (the byte-level alphabet has none).
bool split_merge(std::string_view line, std::pair<std::string, std::string>& out) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  while (i < line.size()) {
    while (i < line.size() && space(line[i])) ++i;
    size_t b = i;
    while (i < line.size() && !space(line[i])) ++i;
    if (i > b) parts.push_back(line.substr(b, i - b));
  }
  if (parts.size() != 2) return false;
  out = {std::string(parts[0]), std::string(parts[1])};
  return true;
}

std::string byte_token(int b) {
  static const auto table = bytes_to_unicode();
  std::string s;
  append_utf8(s, table[static_cast<size_t>(b)]);
  return s;
}

// ref: openai/CLIP simple_tokenizer.py SimpleTokenizer.__init__
VocabSource read_openai_merges(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  std::vector<std::string_view> lines = split_lines(text);
  // merges = lines[1:49152-256-2+1]: the vocabulary is fixed at 49,408 entries.
  constexpr size_t kMaxMerges = 49152 - 256 - 2;
  size_t last = std::min(lines.size(), kMaxMerges + 1);
  while (last > 1 && lines[last - 1].find_first_not_of(" \t\r") == std::string_view::npos) --last;  // trailing blank lines
  if (last <= 1) throw Error("tokenizer: " + path.string() + " holds no BPE merges (expected a header line, then \"a b\" lines)");
  VocabSource src;
  src.file = src.merges_file = path;
  const std::vector<int> order = bytes_in_vocab_order();
  for (int b : order) src.tokens.emplace_back(byte_token(b), 0);
  for (int b : order) src.tokens.emplace_back(byte_token(b) + "</w>", 0);
  for (size_t i = 1; i < last; ++i) {
    std::pair<std::string, std::string> m;
    if (!split_merge(lines[i], m)) {
      throw Error("tokenizer: " + path.string() + " line " + std::to_string(i + 1) + ": expected two symbols \"a b\", got \"" +
                  std::string(lines[i].substr(0, 80)) + "\"");
    }
    src.tokens.emplace_back(m.first + m.second, 0);
    src.merges.push_back(std::move(m));
    src.merge_lines.push_back(static_cast<int64_t>(i + 1));
  }
  src.tokens.emplace_back("<|startoftext|>", 0);
  src.tokens.emplace_back("<|endoftext|>", 0);
  for (size_t i = 0; i < src.tokens.size(); ++i) src.tokens[i].second = static_cast<int64_t>(i);
  return src;
}

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("tokenizer: cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error("tokenizer: " + path.string() + " is not valid JSON: " + e.what());
  }
}

void read_vocab_object(const nlohmann::json& vocab, const std::filesystem::path& path, const char* where, VocabSource& src) {
  if (!vocab.is_object()) throw Error("tokenizer: " + path.string() + ": " + where + " is not an object of token -> id");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) {
      throw Error("tokenizer: " + path.string() + ": " + where + " entry \"" + it.key() + "\" has a non-integer id");
    }
    src.tokens.emplace_back(it.key(), it.value().get<int64_t>());
  }
}

// Hugging Face vocab.json + merges.txt.
VocabSource read_hf_pair(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt) {
  if (!std::filesystem::exists(vocab_json)) {
    throw Error("tokenizer: " + merges_txt.string() + " needs vocab.json beside it, not found: " + vocab_json.string());
  }
  if (!std::filesystem::exists(merges_txt)) {
    throw Error("tokenizer: " + vocab_json.string() + " needs merges.txt beside it, not found: " + merges_txt.string());
  }
  VocabSource src;
  src.file = vocab_json;
  src.merges_file = merges_txt;
  read_vocab_object(read_json(vocab_json), vocab_json, "the file", src);
  const std::string text = read_text_file(merges_txt);
  std::vector<std::string_view> lines = split_lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (i == 0 && line.substr(0, 8) == "#version") continue;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    std::pair<std::string, std::string> m;
    if (!split_merge(line, m)) {
      throw Error("tokenizer: " + merges_txt.string() + " line " + std::to_string(i + 1) + ": expected two symbols \"a b\", got \"" +
                  std::string(line.substr(0, 80)) + "\"");
    }
    src.merges.push_back(std::move(m));
    src.merge_lines.push_back(static_cast<int64_t>(i + 1));
  }
  return src;
}

// Hugging Face tokenizer.json: model.vocab, model.merges ("a b" or ["a", "b"]), added_tokens.
VocabSource read_hf_tokenizer_json(const std::filesystem::path& path) {
  const nlohmann::json root = read_json(path);
  if (!root.is_object() || !root.contains("model") || !root["model"].is_object()) {
    throw Error("tokenizer: " + path.string() + " has no \"model\" object (not a Hugging Face tokenizer.json)");
  }
  const nlohmann::json& model = root["model"];
  if (model.contains("type") && model["type"].is_string() && model["type"] != "BPE") {
    throw Error("tokenizer: " + path.string() + ": model.type is \"" + model["type"].get<std::string>() + "\", expected \"BPE\"");
  }
  if (!model.contains("vocab") || !model.contains("merges")) {
    throw Error("tokenizer: " + path.string() + ": model needs \"vocab\" and \"merges\"");
  }
  VocabSource src;
  src.file = src.merges_file = path;
  read_vocab_object(model["vocab"], path, "model.vocab", src);
  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    for (const auto& t : root["added_tokens"]) {
      if (t.is_object() && t.contains("content") && t.contains("id") && t["content"].is_string() && t["id"].is_number_integer()) {
        src.tokens.emplace_back(t["content"].get<std::string>(), t["id"].get<int64_t>());
      }
    }
  }
  const nlohmann::json& merges = model["merges"];
  if (!merges.is_array()) throw Error("tokenizer: " + path.string() + ": model.merges is not an array");
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& m = merges[i];
    std::pair<std::string, std::string> pair;
    bool ok = false;
    if (m.is_string()) {
      ok = split_merge(m.get<std::string>(), pair);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      pair = {m[0].get<std::string>(), m[1].get<std::string>()};
      ok = true;
    }
    if (!ok) {
      throw Error("tokenizer: " + path.string() + ": model.merges[" + std::to_string(i) + "] is " + m.dump().substr(0, 80) +
                  ", expected \"a b\" or [\"a\", \"b\"]");
    }
    src.merges.push_back(std::move(pair));
    src.merge_lines.push_back(static_cast<int64_t>(i));
  }
  return src;
}

VocabSource read_vocab_source(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw Error("tokenizer: no such file or folder: " + path.string());
  if (fs::is_directory(path)) {
    if (fs::exists(path / "tokenizer.json")) return read_hf_tokenizer_json(path / "tokenizer.json");
    if (fs::exists(path / "vocab.json")) return read_hf_pair(path / "vocab.json", path / "merges.txt");
    if (fs::exists(path / "bpe_simple_vocab_16e6.txt.gz")) return read_openai_merges(path / "bpe_simple_vocab_16e6.txt.gz");
    std::vector<fs::path> gz;
    for (const auto& e : fs::directory_iterator(path)) {
      const std::string name = e.path().filename().string();
      if (name.size() > 7 && name.compare(name.size() - 7, 7, ".txt.gz") == 0) gz.push_back(e.path());
    }
    std::sort(gz.begin(), gz.end());
    if (!gz.empty()) return read_openai_merges(gz.front());
    throw Error("tokenizer: folder " + path.string() +
                " holds no vocabulary (looked for tokenizer.json, vocab.json + merges.txt, *.txt.gz)");
  }
  const std::string name = path.filename().string();
  const std::string ext = path.extension().string();
  if (ext == ".json") {
    if (name == "vocab.json") return read_hf_pair(path, path.parent_path() / "merges.txt");
    // Any other JSON: tokenizer.json if it has a model, else a vocab.json under another name.
    nlohmann::json root = read_json(path);
    if (root.is_object() && root.contains("model")) return read_hf_tokenizer_json(path);
    return read_hf_pair(path, path.parent_path() / "merges.txt");
  }
  if (ext == ".txt" && fs::exists(path.parent_path() / "vocab.json")) return read_hf_pair(path.parent_path() / "vocab.json", path);
  return read_openai_merges(path);  // .txt.gz, or plain merges in OpenAI's layout
}

}  // namespace

// ============================================================================================
// [SECTION] BPE and the cache
// ============================================================================================

struct Tokenizer::Impl {
  std::vector<std::string> id_bytes;  // id -> the bytes it stands for ("</w>" kept as text), for decode
  std::array<int32_t, 256> byte_id{};      // byte -> id of its single-byte token
  std::array<int32_t, 256> byte_end_id{};  // byte -> id of its token + "</w>"
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left id, right id) -> (rank, merged id)
  int32_t sot = 0, eot = 0;

  // Word -> ids. Words repeat a lot (Zipf), so after warm-up nearly every word is one lookup. Sharded by the
  // word's hash so that threads encoding at once rarely touch the same lock.
  struct CacheShard {
    std::shared_mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> words;
  };
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kMaxShardWords = 1 << 14;  // a shard is cleared when full: bounded memory for endless input
  mutable std::array<CacheShard, kCacheShards> cache;

  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  // ref: openai/CLIP simple_tokenizer.py SimpleTokenizer.bpe: repeatedly merge every occurrence (left to right)
  // of the adjacent pair with the lowest rank. Done on ids: each merged string is itself a vocabulary entry.
  void bpe(std::string_view word, std::vector<int32_t>& symbols) const {
    symbols.clear();
    for (size_t i = 0; i + 1 < word.size(); ++i) symbols.push_back(byte_id[static_cast<unsigned char>(word[i])]);
    symbols.push_back(byte_end_id[static_cast<unsigned char>(word.back())]);
    std::vector<int32_t> merged;
    while (symbols.size() > 1) {
      int32_t best_rank = INT32_MAX, best_left = 0, best_right = 0, best_id = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto it = merges.find(pair_key(symbols[i], symbols[i + 1]));
        if (it != merges.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best_left = symbols[i];
          best_right = symbols[i + 1];
          best_id = it->second.second;
        }
      }
      if (best_rank == INT32_MAX) break;
      merged.clear();
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == best_left && symbols[i + 1] == best_right) {
          merged.push_back(best_id);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols.swap(merged);
    }
  }

  void encode_word(std::string_view word, std::vector<int64_t>& out) const {
    if (word == "<|startoftext|>") return out.push_back(sot);
    if (word == "<|endoftext|>") return out.push_back(eot);
    std::string key(word);
    const size_t hash = std::hash<std::string>{}(key);
    CacheShard& shard = cache[hash % kCacheShards];
    {
      std::shared_lock<std::shared_mutex> lock(shard.mutex);
      auto it = shard.words.find(key);
      if (it != shard.words.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids;
    bpe(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    std::unique_lock<std::shared_mutex> lock(shard.mutex);
    if (shard.words.size() >= kMaxShardWords) shard.words.clear();
    shard.words.emplace(std::move(key), std::move(ids));
  }
};

namespace {

// Builds the id tables from a vocabulary and merges, checking that they fit together.
std::shared_ptr<Tokenizer::Impl> build_impl(VocabSource src) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  const std::string file = src.file.string();
  std::unordered_map<std::string, int32_t> ids;
  ids.reserve(src.tokens.size());
  int64_t max_id = -1;
  for (const auto& [token, id] : src.tokens) {
    if (id < 0 || id >= (int64_t(1) << 30)) throw Error("tokenizer: " + file + ": token \"" + token + "\" has id " + std::to_string(id) + ", out of range");
    ids[token] = static_cast<int32_t>(id);
    max_id = std::max(max_id, id);
  }
  // Decoding table: each character of the byte-level alphabet stands for one byte; anything else (none in
  // CLIP's vocabulary) is kept as its UTF-8.
  std::unordered_map<char32_t, unsigned char> byte_decoder;
  const auto encoder = bytes_to_unicode();
  for (int b = 0; b < 256; ++b) byte_decoder[encoder[static_cast<size_t>(b)]] = static_cast<unsigned char>(b);
  impl->id_bytes.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [token, id] : src.tokens) {
    std::string bytes;
    for (size_t i = 0; i < token.size();) {
      size_t len = 0;
      char32_t c = next_code_point(token, i, len);
      auto it = byte_decoder.find(c);
      if (it != byte_decoder.end()) {
        bytes.push_back(static_cast<char>(it->second));
      } else {
        bytes.append(token, i, len);
      }
      i += len;
    }
    impl->id_bytes[static_cast<size_t>(id)] = std::move(bytes);
  }
  for (int b = 0; b < 256; ++b) {
    const std::string t = byte_token(b);
    auto it = ids.find(t);
    auto it_end = ids.find(t + "</w>");
    if (it == ids.end() || it_end == ids.end()) {
      throw Error("tokenizer: " + file + ": the vocabulary lacks the byte-level token \"" + (it == ids.end() ? t : t + "</w>") +
                  "\" (byte " + std::to_string(b) + "); not a CLIP byte-level BPE vocabulary");
    }
    impl->byte_id[static_cast<size_t>(b)] = it->second;
    impl->byte_end_id[static_cast<size_t>(b)] = it_end->second;
  }
  for (const char* special : {"<|startoftext|>", "<|endoftext|>"}) {
    auto it = ids.find(special);
    if (it == ids.end()) throw Error("tokenizer: " + file + ": the vocabulary lacks " + special);
    (std::string(special) == "<|startoftext|>" ? impl->sot : impl->eot) = it->second;
  }
  const std::string merges_file = src.merges_file.string();
  const bool json_merges = src.merges_file.extension() == ".json";
  impl->merges.reserve(src.merges.size());
  for (size_t r = 0; r < src.merges.size(); ++r) {
    const auto& [a, b] = src.merges[r];
    auto where = [&] {
      return json_merges ? merges_file + ": model.merges[" + std::to_string(src.merge_lines[r]) + "]"
                         : merges_file + " line " + std::to_string(src.merge_lines[r]);
    };
    auto ia = ids.find(a), ib = ids.find(b), iab = ids.find(a + b);
    if (ia == ids.end() || ib == ids.end() || iab == ids.end()) {
      const std::string& missing = ia == ids.end() ? a : ib == ids.end() ? b : a + b;
      throw Error("tokenizer: " + where() + ": merge \"" + a + " " + b + "\" uses \"" + missing + "\", which is not in the vocabulary");
    }
    // dict(zip(merges, range(len(merges)))): a repeated pair keeps its last rank.
    impl->merges[Tokenizer::Impl::pair_key(ia->second, ib->second)] = {static_cast<int32_t>(r), iab->second};
  }
  return impl;
}

}  // namespace

// ============================================================================================
// [SECTION] Tokenizer
// ============================================================================================

Tokenizer::Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  bmp_classes();  // build the class table now rather than in the first encode
  return Tokenizer(build_impl(read_vocab_source(path)));
}

std::vector<int64_t> Tokenizer::encode(std::string_view utf8) const {
  const std::string text = clean_text(utf8);
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  scan_words(text, [&](size_t b, size_t e) { impl_->encode_word(std::string_view(text).substr(b, e - b), ids); });
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  // ref: openai/CLIP simple_tokenizer.py SimpleTokenizer.decode
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id >= static_cast<int64_t>(impl_->id_bytes.size())) {
      throw Error("tokenizer: decode: token id " + std::to_string(id) + " is outside [0, " + std::to_string(impl_->id_bytes.size()) + ")");
    }
    bytes += impl_->id_bytes[static_cast<size_t>(id)];
  }
  std::string text = utf8_replace_invalid(bytes);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      out.push_back(' ');
      i += 4;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

at::Tensor Tokenizer::tokenize(const std::vector<std::string>& texts, int64_t context_length, bool truncate) const {
  // ref: openai/CLIP clip/clip.py tokenize
  if (context_length < 1) throw Error("tokenize: context_length must be at least 1, got " + std::to_string(context_length));
  at::Tensor result = at::zeros({static_cast<int64_t>(texts.size()), context_length}, at::kLong);  // (N, L)
  int64_t* data = result.data_ptr<int64_t>();
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int64_t> ids = encode(texts[i]);
    const int64_t count = static_cast<int64_t>(ids.size()) + 2;
    int64_t* row = data + static_cast<int64_t>(i) * context_length;
    if (count > context_length) {
      if (!truncate) {
        // First 40 characters (code points, so no UTF-8 sequence is cut).
        std::string head;
        size_t chars = 0, pos = 0;
        const std::string& t = texts[i];
        while (pos < t.size() && chars < 40) {
          size_t len = 1;
          while (pos + len < t.size() && (static_cast<unsigned char>(t[pos + len]) & 0xC0) == 0x80) ++len;
          head.append(t, pos, len);
          pos += len;
          ++chars;
        }
        throw Error("tokenize: text " + std::to_string(i) + " \"" + head + (pos < t.size() ? "...\"" : "\"") + " needs " +
                    std::to_string(count) + " tokens with start and end, more than the context length " +
                    std::to_string(context_length) + " (pass truncate=true to cut it)");
      }
      row[0] = impl_->sot;
      std::copy(ids.begin(), ids.begin() + (context_length - 1), row + 1);  // context_length - 1 ids after SOT ...
      row[context_length - 1] = impl_->eot;                                 // ... and the last becomes EOT
      continue;
    }
    row[0] = impl_->sot;
    std::copy(ids.begin(), ids.end(), row + 1);
    row[count - 1] = impl_->eot;
  }
  return result;
}

int64_t Tokenizer::sot_token() const { return impl_->sot; }
int64_t Tokenizer::eot_token() const { return impl_->eot; }
int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_bytes.size()); }

namespace detail {
char pretoken_class(char32_t c) { return class_of(c); }

std::vector<std::string> pretokenize(std::string_view cleaned_utf8) {
  check_utf8(cleaned_utf8);
  std::vector<std::string> words;
  scan_words(cleaned_utf8, [&](size_t b, size_t e) { words.emplace_back(cleaned_utf8.substr(b, e - b)); });
  return words;
}
}  // namespace detail

}  // namespace clipguide::clipnet
