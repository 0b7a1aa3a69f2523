// Byte-level BPE training over CLIP-style words (see bpe_trainer.h).
// ref: openai/CLIP clip/simple_tokenizer.py (bytes_to_unicode, the vocabulary's order, "</w>" word ends)
#include "clipnet/train/bpe_trainer.h"

#include "clipnet/text_clean.h"
#include "clipnet/tokenizer.h"
#include "core/error.h"
#include "core/io/file_util.h"

#include <nlohmann/json.hpp>

#include <array>
#include <map>
#include <set>

namespace clipguide::train {
namespace {

// UTF-8 of one code point (< U+0800 is all bytes_to_unicode needs).
std::string utf8_of(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

// bytes_to_unicode (as clipnet/tokenizer.cpp): printable Latin-1 bytes stand for themselves, the other 68
// bytes for U+0100 onwards. Returned in vocabulary order: the direct bytes first, then the rest.
std::vector<std::pair<int, std::string>> byte_symbols() {
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  std::vector<std::pair<int, std::string>> out;
  for (int b = 0; b < 256; ++b)
    if (direct[b]) out.emplace_back(b, utf8_of(static_cast<char32_t>(b)));
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (!direct[b]) out.emplace_back(b, utf8_of(static_cast<char32_t>(256 + n++)));
  return out;
}

using Word = std::vector<std::string>;  // symbols

}  // namespace

BpeVocabulary train_bpe(const std::vector<std::string>& captions, const BpeTrainOptions& options) {
  if (options.vocab_size < 514)
    throw Error("BPE vocabulary size must be at least 514 (512 byte symbols + 2 special tokens), got " +
                std::to_string(options.vocab_size));
  const auto symbols = byte_symbols();
  std::array<std::string, 256> symbol_of;
  for (const auto& [b, s] : symbols) symbol_of[b] = s;

  // Word counts over the cleaned, pre-tokenised captions; the last symbol carries "</w>".
  std::map<Word, int64_t> counts;
  for (const auto& caption : captions) {
    for (const auto& word : clipnet::detail::pretokenize(clipnet::clean_text(caption))) {
      Word w;
      for (unsigned char c : word) w.push_back(symbol_of[c]);
      if (w.empty()) continue;
      w.back() += "</w>";
      ++counts[w];
    }
  }
  std::vector<std::pair<Word, int64_t>> words(counts.begin(), counts.end());

  BpeVocabulary vocab;
  for (const auto& [b, s] : symbols) vocab.tokens.push_back(s);
  for (const auto& [b, s] : symbols) vocab.tokens.push_back(s + "</w>");
  const int64_t n_merges = options.vocab_size - 514;
  while (static_cast<int64_t>(vocab.merges.size()) < n_merges) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [w, n] : words)
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs[{w[i], w[i + 1]}] += n;
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_count = 0;
    for (const auto& [p, n] : pairs)
      if (n > best_count) best = &p, best_count = n;  // map order: ties keep the smaller pair
    if (best == nullptr || best_count < options.min_frequency) break;
    const auto merge = *best;
    const std::string joined = merge.first + merge.second;
    for (auto& [w, n] : words) {
      Word out;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == merge.first && w[i + 1] == merge.second) {
          out.push_back(joined);
          ++i;
        } else {
          out.push_back(w[i]);
        }
      }
      w = std::move(out);
    }
    vocab.merges.push_back(merge);
    vocab.tokens.push_back(joined);
  }
  vocab.tokens.push_back("<|startoftext|>");
  vocab.tokens.push_back("<|endoftext|>");
  return vocab;
}

void write_bpe_vocabulary(const BpeVocabulary& vocabulary, const std::filesystem::path& folder) {
  std::filesystem::create_directories(folder);
  nlohmann::ordered_json v = nlohmann::ordered_json::object();
  for (size_t i = 0; i < vocabulary.tokens.size(); ++i) v[vocabulary.tokens[i]] = static_cast<int64_t>(i);
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : vocabulary.merges) merges += a + " " + b + "\n";
  for (const auto& [name, text] : {std::pair{"vocab.json", v.dump()}, std::pair{"merges.txt", merges}}) {
    clipguide::io::AtomicFile file(folder / name);
    file.write(text);
    file.commit();
  }
}

}  // namespace clipguide::train
