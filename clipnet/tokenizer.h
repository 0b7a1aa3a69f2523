// OpenAI CLIP's byte-level BPE tokenizer, id for id: text cleaning (text_clean.h), the word-splitting regex as
// a hand-written scanner, ranked BPE merges with a per-word cache, and clip.tokenize's padded id tensor.
// ref: openai/CLIP clip/simple_tokenizer.py (SimpleTokenizer), clip/clip.py (tokenize)
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace clipguide::clipnet {

// Shape letters: N = number of texts, L = context length.
class Tokenizer {
 public:
  // Reads a vocabulary. `path` is one of:
  //   - OpenAI's bpe_simple_vocab_16e6.txt.gz (or the same merges uncompressed as .txt): header line, then
  //     "a b" merges; like SimpleTokenizer, only the first 48,894 merges are used and the vocabulary is
  //     256 bytes + 256 bytes with "</w>" + merges + <|startoftext|>, <|endoftext|>.
  //   - Hugging Face vocab.json + merges.txt (either file; the other must sit beside it).
  //   - Hugging Face tokenizer.json (model.vocab, model.merges as "a b" strings or [a, b] pairs, added_tokens).
  //   - a folder holding one of these (tokenizer.json, then vocab.json + merges.txt, then *.txt.gz).
  // Throws clipguide::Error naming the file and the problem (line number for a bad merges line).
  static Tokenizer from_file(const std::filesystem::path& path);

  // Ids of `utf8` without start/end tokens, as SimpleTokenizer.encode. Throws clipguide::Error on invalid
  // UTF-8 (naming the byte offset). Safe to call from several threads at once.
  std::vector<int64_t> encode(std::string_view utf8) const;

  // As SimpleTokenizer.decode: the ids' bytes, UTF-8 decoded with U+FFFD for bad sequences, "</w>" -> ' '.
  // Throws clipguide::Error for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int64_t>& ids) const;

  // As clip.tokenize, but int64: (N, L) with <|startoftext|> ids <|endoftext|>, zero padded. A text needing more
  // than L tokens throws clipguide::Error (naming it and its count) unless `truncate`, which keeps the first L
  // tokens and makes the last one <|endoftext|>.
  at::Tensor tokenize(const std::vector<std::string>& texts, int64_t context_length = 77, bool truncate = false) const;

  int64_t sot_token() const;   // id of <|startoftext|> (49406 for OpenAI's vocabulary)
  int64_t eot_token() const;   // id of <|endoftext|> (49407)
  int64_t vocab_size() const;  // largest id + 1 (49408)

  struct Impl;  // vocabulary, merge ranks and the word cache; shared by copies of this Tokenizer

 private:
  explicit Tokenizer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

namespace detail {
// How OpenAI's pattern (with re.IGNORECASE, `regex` module) sees one code point:
// 'L' [\p{L}], 'N' [\p{N}], 'S' \s, 'O' [^\s\p{L}\p{N}], '-' none of them (U+0345 under IGNORECASE).
char pretoken_class(char32_t c);

// The words OpenAI's pattern finds in already-cleaned text, as UTF-8 substrings.
std::vector<std::string> pretokenize(std::string_view cleaned_utf8);
}  // namespace detail

}  // namespace clipguide::clipnet
