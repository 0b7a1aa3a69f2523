// Training a small byte-level BPE vocabulary from captions, in the layout clipnet::Tokenizer reads
// (Hugging Face vocab.json + merges.txt) and with CLIP's conventions: OpenAI's text cleaning and
// pre-tokenisation, 256 byte symbols, the same 256 with "</w>", the learned merges, then
// <|startoftext|> and <|endoftext|> (so EOT is the largest id, as encode_text expects).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace clipguide::train {

// BPE training settings.
struct BpeTrainOptions {
  int64_t vocab_size = 1024;  // target size including the 512 byte symbols and the 2 special tokens
  int64_t min_frequency = 2;  // a pair seen fewer times (weighted by word counts) is never merged
};

// A trained vocabulary.
struct BpeVocabulary {
  std::vector<std::string> tokens;                            // id -> token (byte-level alphabet)
  std::vector<std::pair<std::string, std::string>> merges;    // in rank order
};

// Learns merges greedily (most frequent adjacent pair first; ties broken by the smaller pair) over the
// words of the cleaned, pre-tokenised captions. Deterministic. Throws Error when vocab_size < 514.
BpeVocabulary train_bpe(const std::vector<std::string>& captions, const BpeTrainOptions& options = {});

// Writes folder/vocab.json and folder/merges.txt (atomically each); Tokenizer::from_file(folder) reads them.
void write_bpe_vocabulary(const BpeVocabulary& vocabulary, const std::filesystem::path& folder);

}  // namespace clipguide::train
