// Training data sources (dataset.h): CSV/TSV manifests with RFC 4180 quoting, WebDataset tar shards
// through libarchive with brace-expanded shard lists, and image folders with sidecar captions.
// [SECTION] Dataset defaults  [SECTION] CSV  [SECTION] shard lists  [SECTION] tar  [SECTION] image folders
#include "clipnet/train/dataset.h"

#include "core/error.h"
#include "core/image_io.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <sstream>

namespace clipguide::train {
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path.string() + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string separator_name(char c) { return c == '\t' ? "\\t" : std::string(1, c); }

}  // namespace

// [SECTION] Dataset defaults -------------------------------------------------------------------------

Sample Dataset::get(int64_t) const { throw Error(describe() + " is a stream: read it by shards, not by index"); }
std::unique_ptr<ShardReader> Dataset::open_shard(int64_t) const {
  throw Error(describe() + " is indexable: read it with get(index), not by shards");
}
Sample Dataset::decode(const EncodedSample&) const {
  throw Error(describe() + " is indexable: it has no encoded samples to decode");
}

std::vector<int64_t> strided_part(int64_t n, int64_t part, int64_t parts) {
  if (parts < 1 || part < 0 || part >= parts) {
    throw Error("part " + std::to_string(part) + " of " + std::to_string(parts) + ": expected 0 <= part < parts");
  }
  std::vector<int64_t> out;
  for (int64_t i = part; i < n; i += parts) out.push_back(i);
  return out;
}

bool is_image_extension(const std::string& extension) {
  const std::string e = lower(extension);
  return e == ".jpg" || e == ".jpeg" || e == ".png" || e == ".webp";
}

// [SECTION] CSV --------------------------------------------------------------------------------------

std::vector<CsvRecord> parse_csv(const std::string& text, char separator, const std::string& name) {
  std::vector<CsvRecord> records;
  size_t i = 0;
  int64_t line = 1;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // UTF-8 byte order mark
  const size_t n = text.size();
  while (i < n) {
    CsvRecord record{{}, line};
    std::string field;
    bool blank = true;  // a line with nothing on it is skipped, as pandas does
    for (;;) {
      if (i < n && text[i] == '"' && field.empty()) {
        // Quoted field: "" is a quote; separators and newlines inside are text.
        blank = false;
        const int64_t open_line = line;
        ++i;
        for (;;) {
          if (i >= n) throw Error(name + ":" + std::to_string(open_line) + ": quoted field is never closed");
          if (text[i] == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        if (i < n && text[i] != separator && text[i] != '\n' && text[i] != '\r') {
          throw Error(name + ":" + std::to_string(line) + ": text after the closing quote of a field");
        }
      }
      // Unquoted text up to the separator or the end of the line.
      while (i < n && text[i] != separator && text[i] != '\n' && text[i] != '\r') {
        field += text[i++];
        blank = false;
      }
      record.fields.push_back(std::move(field));
      field.clear();
      if (i < n && text[i] == separator) {
        blank = false;
        ++i;
        continue;
      }
      // End of line (LF, CRLF or CR) or of the text.
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i;
      ++line;
      break;
    }
    if (!blank) records.push_back(std::move(record));
  }
  return records;
}

CsvDataset::CsvDataset(const std::filesystem::path& manifest, CsvOptions options)
    : manifest_(manifest), options_(std::move(options)) {
  const std::string name = manifest.string();
  if (!std::filesystem::is_regular_file(manifest)) throw Error("manifest '" + name + "' does not exist");
  std::vector<CsvRecord> records = parse_csv(read_text_file(manifest), options_.separator, name);
  if (records.empty()) throw Error(name + ": empty manifest (expected a header row)");
  const CsvRecord& header = records[0];
  auto column = [&](const std::string& key, const char* flag) {
    auto it = std::find(header.fields.begin(), header.fields.end(), key);
    if (it != header.fields.end()) return static_cast<size_t>(it - header.fields.begin());
    std::string columns;
    for (const auto& f : header.fields) columns += (columns.empty() ? "'" : ", '") + f + "'";
    throw Error(name + ":" + std::to_string(header.line) + ": no column '" + key + "' (" + flag +
                ") in the header; columns are " + columns + " with separator '" +
                separator_name(options_.separator) + "'");
  };
  const size_t image_col = column(options_.image_key, "image key");
  const size_t caption_col = column(options_.caption_key, "caption key");
  const std::filesystem::path folder = manifest.parent_path();
  rows_.reserve(records.size() - 1);
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& rec = records[r];
    if (rec.fields.size() != header.fields.size()) {
      throw Error(name + ":" + std::to_string(rec.line) + ": bad row: " + std::to_string(rec.fields.size()) +
                  " fields, the header has " + std::to_string(header.fields.size()) + " (separator '" +
                  separator_name(options_.separator) + "')");
    }
    std::filesystem::path image = rec.fields[image_col];
    if (image.empty()) throw Error(name + ":" + std::to_string(rec.line) + ": empty '" + options_.image_key + "'");
    if (image.is_relative()) image = folder / image;
    rows_.push_back({image.lexically_normal(), rec.fields[caption_col], rec.line});
  }
}

Sample CsvDataset::get(int64_t index) const {
  if (index < 0 || index >= size()) {
    throw Error(describe() + ": index " + std::to_string(index) + " out of range");
  }
  const Row& row = rows_[static_cast<size_t>(index)];
  try {
    return {clipguide::read_image(row.image), row.caption, manifest_.filename().string() + ":" + std::to_string(row.line)};
  } catch (const std::exception& e) {
    throw Error(manifest_.string() + ":" + std::to_string(row.line) + ": " + error_text(e));
  }
}

std::string CsvDataset::describe() const {
  return "CSV manifest '" + manifest_.string() + "' (" + std::to_string(rows_.size()) + " samples)";
}

// [SECTION] shard lists ------------------------------------------------------------------------------
namespace {

// Index of the '}' closing the '{' at `open`, or npos.
size_t closing_brace(const std::string& s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string::npos;
}

// Splits at `sep` characters outside braces.
std::vector<std::string> split_top_level(const std::string& s, const std::string& sep) {
  std::vector<std::string> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}') --depth;
    if (depth == 0 && s.compare(i, sep.size(), sep) == 0) {
      parts.push_back(s.substr(start, i - start));
      start = i + sep.size();
      i = start - 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

// braceexpand: the first brace group's alternatives, each followed by every expansion of the rest.
std::vector<std::string> brace_expand(const std::string& s) {
  const size_t open = s.find('{');
  if (open == std::string::npos) return {s};
  const size_t close = closing_brace(s, open);
  if (close == std::string::npos) return {s};
  const std::string prefix = s.substr(0, open), body = s.substr(open + 1, close - open - 1);
  std::vector<std::string> alternatives;
  static const std::regex numeric(R"((-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?)");
  static const std::regex letters(R"(([a-zA-Z])\.\.([a-zA-Z])(?:\.\.(-?\d+))?)");
  std::smatch m;
  if (std::regex_match(body, m, numeric)) {
    const std::string a = m[1], b = m[2];
    const int64_t from = std::stoll(a), to = std::stoll(b);
    int64_t step = m[3].matched ? std::llabs(std::stoll(m[3])) : 1;
    if (step == 0) step = 1;
    // Zero padding as braceexpand: when either end is written with a leading zero.
    auto padded = [](const std::string& x) { return x.size() > 1 && (x[0] == '0' || (x[0] == '-' && x[1] == '0')); };
    const size_t width = (padded(a) || padded(b)) ? std::max(a.size(), b.size()) : 0;
    const int64_t dir = from <= to ? 1 : -1;
    for (int64_t v = from; dir > 0 ? v <= to : v >= to; v += dir * step) {
      std::string digits = std::to_string(std::llabs(v));
      const size_t sign = v < 0 ? 1 : 0;
      if (digits.size() + sign < width) digits.insert(0, width - digits.size() - sign, '0');
      alternatives.push_back((v < 0 ? "-" : "") + digits);
    }
  } else if (std::regex_match(body, m, letters)) {
    const char from = m.str(1)[0], to = m.str(2)[0];
    const int dir = from <= to ? 1 : -1;
    const int step = m[3].matched ? std::max(1, std::abs(std::stoi(m[3]))) : 1;
    for (int c = from; dir > 0 ? c <= to : c >= to; c += dir * step) alternatives.emplace_back(1, static_cast<char>(c));
  } else {
    std::vector<std::string> items = split_top_level(body, ",");
    if (items.size() < 2) {
      // "{x}": not a list, kept literally (as braceexpand does).
      std::vector<std::string> out;
      for (const auto& rest : brace_expand(s.substr(close + 1))) out.push_back(prefix + "{" + body + "}" + rest);
      return out;
    }
    for (const auto& item : items) {
      for (auto& e : brace_expand(item)) alternatives.push_back(std::move(e));
    }
  }
  std::vector<std::string> out;
  const std::vector<std::string> rests = brace_expand(s.substr(close + 1));
  for (const auto& alt : alternatives) {
    for (const auto& rest : rests) out.push_back(prefix + alt + rest);
  }
  return out;
}

}  // namespace

std::vector<std::string> expand_shard_spec(const std::string& spec) {
  std::vector<std::string> out;
  for (const auto& group : split_top_level(spec, "::")) {
    for (const auto& item : split_top_level(group, ",")) {
      const std::string t = trim(item);
      if (t.empty()) continue;
      for (auto& e : brace_expand(t)) out.push_back(std::move(e));
    }
  }
  return out;
}

// [SECTION] tar --------------------------------------------------------------------------------------
namespace {

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};

class TarShardReader : public ShardReader {
 public:
  TarShardReader(std::filesystem::path path, int64_t shard) : path_(std::move(path)), shard_(shard) {
    archive_.reset(archive_read_new());
    archive_read_support_filter_all(archive_.get());
    archive_read_support_format_tar(archive_.get());
    archive_read_support_format_gnutar(archive_.get());
    if (!std::filesystem::is_regular_file(path_)) throw Error("tar shard '" + path_.string() + "' does not exist");
    if (archive_read_open_filename(archive_.get(), path_.c_str(), 1 << 16) != ARCHIVE_OK) fail("cannot open");
  }

  std::optional<EncodedSample> next() override {
    // Members of one sample are consecutive; a new key closes the sample being gathered.
    for (;;) {
      if (!pending_ && (eof_ || !read_member())) {
        eof_ = true;
        if (auto done = finish()) return done;
        return std::nullopt;
      }
      Member member = std::move(*pending_);
      pending_.reset();
      if (!current_.key.empty() && member.key != current_.key) {
        pending_ = std::move(member);
        if (auto done = finish()) return done;
        continue;
      }
      current_.key = member.key;
      if (member.suffix == "txt") {
        current_.caption = trim(member.data);
        has_caption_ = true;
      } else if (is_image_extension("." + member.suffix) && !has_image_) {
        current_.image_name = path_.string() + ":" + member.path;
        current_.image_bytes = std::move(member.data);
        has_image_ = true;
      }
    }
  }

 private:
  struct Member {
    std::string path, key, suffix, data;
  };

  [[noreturn]] void fail(const std::string& what) const {
    const char* why = archive_error_string(archive_.get());
    throw Error(what + " tar shard '" + path_.string() + "': " + (why ? why : "unknown libarchive error"));
  }

  // Reads the next regular member into pending_; false at the end of the archive.
  bool read_member() {
    archive_entry* entry = nullptr;
    for (;;) {
      const int r = archive_read_next_header(archive_.get(), &entry);
      if (r == ARCHIVE_EOF) return false;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) fail("cannot read the next member of");
      if (archive_entry_filetype(entry) == AE_IFREG) break;
    }
    Member m;
    m.path = archive_entry_pathname(entry);
    // WebDataset: key = path up to the first dot of the file name; suffix = the rest, lower case.
    const size_t slash = m.path.rfind('/');
    const size_t dot = m.path.find('.', slash == std::string::npos ? 0 : slash + 1);
    m.key = m.path.substr(0, dot);
    m.suffix = dot == std::string::npos ? "" : lower(m.path.substr(dot + 1));
    const int64_t size = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
    m.data.reserve(static_cast<size_t>(std::max<int64_t>(size, 0)));
    char buffer[1 << 16];
    for (;;) {
      const la_ssize_t got = archive_read_data(archive_.get(), buffer, sizeof(buffer));
      if (got < 0) fail("cannot read member '" + m.path + "' of");
      if (got == 0) break;
      m.data.append(buffer, static_cast<size_t>(got));
    }
    pending_ = std::move(m);
    return true;
  }

  // The gathered sample if it has an image and a caption (else skipped); resets the gathering state.
  std::optional<EncodedSample> finish() {
    std::optional<EncodedSample> out;
    if (has_image_ && has_caption_) {
      current_.shard = shard_;
      current_.position = position_++;
      out = std::move(current_);
    }
    current_ = EncodedSample{};
    has_image_ = has_caption_ = false;
    return out;
  }

  std::filesystem::path path_;
  int64_t shard_;
  std::unique_ptr<archive, ArchiveDeleter> archive_;
  std::optional<Member> pending_;  // read ahead: the first member of the next sample
  EncodedSample current_;          // the sample being gathered
  bool has_image_ = false, has_caption_ = false;
  bool eof_ = false;      // libarchive must not be asked for a header after its end
  int64_t position_ = 0;  // samples returned so far
};

}  // namespace

TarDataset::TarDataset(const std::string& spec) {
  for (auto& s : expand_shard_spec(spec)) shards_.emplace_back(s);
  if (shards_.empty()) throw Error("tar shard list '" + spec + "' names no shards");
}

TarDataset::TarDataset(std::vector<std::filesystem::path> shards) : shards_(std::move(shards)) {
  if (shards_.empty()) throw Error("TarDataset: empty shard list");
}

std::unique_ptr<ShardReader> TarDataset::open_shard(int64_t shard) const {
  if (shard < 0 || shard >= num_shards()) {
    throw Error(describe() + ": shard " + std::to_string(shard) + " out of range");
  }
  return std::make_unique<TarShardReader>(shards_[static_cast<size_t>(shard)], shard);
}

Sample TarDataset::decode(const EncodedSample& encoded) const {
  return {clipguide::decode_image(encoded.image_bytes.data(), encoded.image_bytes.size(), encoded.image_name),
          encoded.caption, encoded.key};
}

std::string TarDataset::describe() const {
  return "WebDataset of " + std::to_string(shards_.size()) + " tar shard" + (shards_.size() == 1 ? "" : "s") +
         " ('" + shards_.front().string() + "'" + (shards_.size() > 1 ? ", ...)" : ")");
}

// [SECTION] image folders ----------------------------------------------------------------------------

ImageFolderDataset::ImageFolderDataset(const std::filesystem::path& root, ImageFolderOptions options)
    : root_(root) {
  if (!std::filesystem::is_directory(root)) throw Error("image folder '" + root.string() + "' does not exist");
  for (const auto& entry : std::filesystem::recursive_directory_iterator(
           root, std::filesystem::directory_options::follow_directory_symlink)) {
    if (!entry.is_regular_file() || !is_image_extension(entry.path().extension().string())) continue;
    std::filesystem::path caption = entry.path();
    caption.replace_extension(".txt");
    if (!std::filesystem::is_regular_file(caption)) {
      if (options.skip_uncaptioned) continue;
      throw Error("image '" + entry.path().string() + "' has no caption file '" + caption.filename().string() +
                  "' beside it (ImageFolderOptions::skip_uncaptioned skips such images)");
    }
    images_.push_back(entry.path());
  }
  std::sort(images_.begin(), images_.end());
  if (images_.empty()) throw Error("image folder '" + root.string() + "' has no captioned .jpg/.jpeg/.png/.webp images");
}

Sample ImageFolderDataset::get(int64_t index) const {
  if (index < 0 || index >= size()) throw Error(describe() + ": index " + std::to_string(index) + " out of range");
  const std::filesystem::path& image = images_[static_cast<size_t>(index)];
  std::filesystem::path caption = image;
  caption.replace_extension(".txt");
  std::filesystem::path key = image.lexically_relative(root_);
  key.replace_extension();
  return {clipguide::read_image(image), trim(read_text_file(caption)), key.generic_string()};
}

std::string ImageFolderDataset::describe() const {
  return "image folder '" + root_.string() + "' (" + std::to_string(images_.size()) + " samples)";
}

}  // namespace clipguide::train
