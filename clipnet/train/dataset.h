// Where training pairs (image, caption) come from: open_clip-style CSV/TSV manifests, WebDataset tar
// shards, image folders with sidecar captions (the procedural shapes world is in shapes_world.h).
// Decoding only: cropping, resizing, normalising and batching are the loader's (loader.h).
// Shapes: H/W image height/width.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clipguide::train {

// One decoded training pair.
struct Sample {
  at::Tensor image;     // (3, H, W) uint8 RGB
  std::string caption;  // the text paired with it
  std::string key;      // stable name: manifest row, tar key, relative path, "shapes/train/42"
};

// A sample read from a stream but not decoded yet: decoding (the expensive part) can then run on any
// loader worker while the stream itself is read in order.
struct EncodedSample {
  std::string key;           // WebDataset key: the member path up to the first dot of its file name
  std::string image_name;    // "<shard>:<member>" (its extension picks the decoder; errors name it)
  std::string image_bytes;   // the encoded image file
  std::string caption;       // the .txt member, whitespace trimmed
  int64_t shard = 0;         // index of its shard in Dataset::shards()
  int64_t position = 0;      // index of the sample within its shard
};

// Reads one shard of a stream front to back. Not thread-safe: one reader per thread.
class ShardReader {
 public:
  virtual ~ShardReader() = default;
  // The next complete sample, or nullopt at the end of the shard.
  virtual std::optional<EncodedSample> next() = 0;
};

// A source of samples. Two kinds:
//  - indexable (CSV, image folder, shapes world): get(i) for any i in [0, size()), or any i >= 0 when
//    size() is -1 (infinite). get() is const and thread-safe, so ranks and workers share one dataset.
//  - streams (tar shards): num_shards() shards, each read in order with open_shard(); decode() turns
//    what a reader returns into a Sample (thread-safe). Ranks and workers split the shard list.
class Dataset {
 public:
  virtual ~Dataset() = default;
  // Number of samples: -1 when infinite (indexable) or unknown until read (streams).
  virtual int64_t size() const = 0;
  // True for random-access datasets (get), false for streams (open_shard/decode).
  virtual bool indexable() const = 0;
  // Sample `index`. Indexable datasets only.
  virtual Sample get(int64_t index) const;
  // Number of shards of a stream; 1 for indexable datasets.
  virtual int64_t num_shards() const { return 1; }
  // A reader over shard `shard` of a stream. Streams only.
  virtual std::unique_ptr<ShardReader> open_shard(int64_t shard) const;
  // Decodes what a ShardReader returned. Streams only.
  virtual Sample decode(const EncodedSample& encoded) const;
  // One line for messages: "CSV manifest 'train.tsv' (1200 samples)".
  virtual std::string describe() const = 0;
};

// The indices part, part + parts, part + 2 * parts, ... below n: a rank's (or a worker's) share, disjoint
// from the other parts'. Throws when part is not in [0, parts).
std::vector<int64_t> strided_part(int64_t n, int64_t part, int64_t parts);

// ---------------------------------------------------------------------------------------------------
// CSV/TSV manifests, as open_clip's CsvDataset reads them (pandas.read_csv): a header row naming the
// columns, RFC 4180 quoting ("a, b" and "say ""hi""" fields, newlines inside quotes), CRLF or LF.

// How to read a manifest (open_clip's --csv-img-key/--csv-caption-key/--csv-separator).
struct CsvOptions {
  std::string image_key = "filepath";  // column with the image path (relative: to the manifest's folder)
  std::string caption_key = "title";   // column with the caption
  char separator = '\t';               // open_clip's default; ',' for comma-separated files
};

class CsvDataset : public Dataset {
 public:
  // Parses the manifest now (images are read on get()); errors name "file:line" and the column.
  explicit CsvDataset(const std::filesystem::path& manifest, CsvOptions options = {});
  int64_t size() const override { return static_cast<int64_t>(rows_.size()); }
  bool indexable() const override { return true; }
  Sample get(int64_t index) const override;
  std::string describe() const override;

  // Image path of row `index` (resolved) and the manifest line it came from.
  const std::filesystem::path& image_path(int64_t index) const { return rows_.at(index).image; }
  int64_t line(int64_t index) const { return rows_.at(index).line; }

 private:
  struct Row {
    std::filesystem::path image;  // resolved against the manifest's folder
    std::string caption;
    int64_t line;  // 1-based line where the record starts
  };
  std::filesystem::path manifest_;
  CsvOptions options_;
  std::vector<Row> rows_;
};

// Splits CSV text into records of fields (exposed for tests). Each record keeps the 1-based line it
// starts on. Throws Error naming `name:line` on an unterminated quote or text after a closing quote.
struct CsvRecord {
  std::vector<std::string> fields;
  int64_t line;
};
std::vector<CsvRecord> parse_csv(const std::string& text, char separator, const std::string& name);

// ---------------------------------------------------------------------------------------------------
// WebDataset tar shards: members sharing a key (path up to the first dot of the file name) form one
// sample; the image is the .jpg/.jpeg/.png/.webp member, the caption the .txt member. Samples lacking
// either are skipped (open_clip's filter_no_caption_or_no_image). Plain or compressed tar (libarchive).

// Expands a shard list as webdataset/open_clip write it: "a/shard-{000..009}.tar" (numeric ranges keep
// the zero padding), "{a,b}", nested braces, and several lists joined by ',' or "::" at the top level.
std::vector<std::string> expand_shard_spec(const std::string& spec);

class TarDataset : public Dataset {
 public:
  // `spec` as expand_shard_spec takes it. Shards are opened when read; a missing one fails the read.
  explicit TarDataset(const std::string& spec);
  explicit TarDataset(std::vector<std::filesystem::path> shards);
  int64_t size() const override { return -1; }
  bool indexable() const override { return false; }
  int64_t num_shards() const override { return static_cast<int64_t>(shards_.size()); }
  std::unique_ptr<ShardReader> open_shard(int64_t shard) const override;
  Sample decode(const EncodedSample& encoded) const override;
  std::string describe() const override;

  const std::vector<std::filesystem::path>& shards() const { return shards_; }

 private:
  std::vector<std::filesystem::path> shards_;
};

// ---------------------------------------------------------------------------------------------------
// Image folders: every .jpg/.jpeg/.png/.webp below `root` (recursively) with its caption in the file of
// the same name with .txt ("cats/a.jpg" + "cats/a.txt"), sorted by path so that indices are stable.

// How to scan an image folder.
struct ImageFolderOptions {
  bool skip_uncaptioned = false;  // images without a .txt: skipped (true) or an error naming them (false)
};

class ImageFolderDataset : public Dataset {
 public:
  explicit ImageFolderDataset(const std::filesystem::path& root, ImageFolderOptions options = {});
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  bool indexable() const override { return true; }
  Sample get(int64_t index) const override;
  std::string describe() const override;

  const std::filesystem::path& image_path(int64_t index) const { return images_.at(index); }

 private:
  std::filesystem::path root_;
  std::vector<std::filesystem::path> images_;  // sorted; caption beside each
};

// True for the image extensions the folder and tar readers take (case-insensitive, with the dot).
bool is_image_extension(const std::string& extension);

}  // namespace clipguide::train
