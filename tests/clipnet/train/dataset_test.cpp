// Tests for clipnet/train/dataset: CSV/TSV parsing (quotes, newlines, bad rows, missing columns with
// file:line), WebDataset tar shards, brace-expanded shard lists and image folders, read back against
// what Python wrote and PIL decoded (fixture tests/reference/train_data.py).
#include "clipnet/train/dataset.h"
#include "clipnet/train/open_dataset.h"

#include "core/error.h"
#include "core/image_io.h"
#include "core/io/safetensors.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <fstream>

namespace clipguide::train {
namespace {

using test::fixture_dir;

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

nlohmann::json expected_json(const std::filesystem::path& dir) {
  std::ifstream in(dir / "expected.json");
  return nlohmann::json::parse(in);
}

// Runs `f`, expects a clipguide::Error whose text contains every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string text = e.what();
    for (const auto& p : parts) EXPECT_NE(text.find(p), std::string::npos) << "'" << p << "' not in: " << text;
  }
}

TEST(ParseCsv, QuotesSeparatorsAndNewlines) {
  const std::string text = "a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\n\n2,\"two\nlines\",\n3,,last";
  auto records = parse_csv(text, ',', "t.csv");
  ASSERT_EQ(records.size(), 4u);  // the blank line is skipped
  EXPECT_EQ(records[1].fields, (std::vector<std::string>{"1", "x, y", "say \"hi\""}));
  EXPECT_EQ(records[1].line, 2);
  EXPECT_EQ(records[2].fields, (std::vector<std::string>{"2", "two\nlines", ""}));
  EXPECT_EQ(records[2].line, 4);
  EXPECT_EQ(records[3].fields, (std::vector<std::string>{"3", "", "last"}));
  EXPECT_EQ(records[3].line, 6);  // the quoted newline counts
}

TEST(ParseCsv, UnterminatedQuoteNamesTheLine) {
  expect_error([] { parse_csv("a\tb\n1\t\"open\n", '\t', "m.tsv"); }, {"m.tsv:2", "never closed"});
  expect_error([] { parse_csv("a,b\n\"x\"y,2\n", ',', "m.csv"); }, {"m.csv:2", "after the closing quote"});
}

TEST(CsvDataset, ReadsTsvAndCsvManifestsLikeOpenClip) {
  auto dir = fixture_dir("train_data");
  auto pixels = clipguide::read_safetensors(dir / "expected.safetensors").tensors;
  auto expected = expected_json(dir)["manifest"];
  for (const auto& [file, sep] : std::vector<std::pair<std::string, char>>{{"manifest.tsv", '\t'}, {"manifest.csv", ','}}) {
    SCOPED_TRACE(file);
    CsvOptions options;
    options.separator = sep;
    CsvDataset data(dir / file, options);
    ASSERT_EQ(data.size(), static_cast<int64_t>(expected.size()));
    EXPECT_TRUE(data.indexable());
    for (int64_t i = 0; i < data.size(); ++i) {
      Sample s = data.get(i);
      EXPECT_EQ(s.caption, expected[i][1].get<std::string>());
      EXPECT_EQ(data.image_path(i), (dir / expected[i][0].get<std::string>()).lexically_normal());
      EXPECT_TRUE(test::tensors_close(s.image, pixels.at(expected[i][2].get<std::string>()), 0));
    }
    EXPECT_EQ(data.line(2), 5);  // row 2 starts after the caption with a newline
    EXPECT_EQ(data.get(2).key, file + ":5");
  }
}

TEST(CsvDataset, MissingColumnBadRowAndMissingImageAreNamed) {
  auto dir = test::temp_dir();
  write_file(dir / "cols.tsv", "filepath\tcaption\na.png\thello\n");
  expect_error([&] { CsvDataset data(dir / "cols.tsv"); }, {"cols.tsv:1", "no column 'title'", "'filepath', 'caption'"});
  CsvOptions other;
  other.caption_key = "caption";
  other.image_key = "path";
  expect_error([&] { CsvDataset data(dir / "cols.tsv", other); }, {"cols.tsv:1", "no column 'path'"});

  write_file(dir / "bad.tsv", "filepath\ttitle\na.png\tok\nb.png\ttoo\tmany\n");
  expect_error([&] { CsvDataset data(dir / "bad.tsv"); }, {"bad.tsv:3", "3 fields", "header has 2"});

  write_file(dir / "missing.tsv", "filepath\ttitle\nnot_there.png\tcaption\n");
  CsvDataset missing(dir / "missing.tsv");
  expect_error([&] { missing.get(0); }, {"missing.tsv:2", "not_there.png"});
  expect_error([&] { CsvDataset data(dir / "nope.tsv"); }, {"nope.tsv", "does not exist"});
}

TEST(ExpandShardSpec, BracesRangesAndLists) {
  EXPECT_EQ(expand_shard_spec("s-{000..003}.tar"),
            (std::vector<std::string>{"s-000.tar", "s-001.tar", "s-002.tar", "s-003.tar"}));
  EXPECT_EQ(expand_shard_spec("d/{a,b}-{8..10}.tar"),
            (std::vector<std::string>{"d/a-8.tar", "d/a-9.tar", "d/a-10.tar", "d/b-8.tar", "d/b-9.tar", "d/b-10.tar"}));
  EXPECT_EQ(expand_shard_spec("x-{0..4..2}.tar"), (std::vector<std::string>{"x-0.tar", "x-2.tar", "x-4.tar"}));
  EXPECT_EQ(expand_shard_spec("a.tar,b-{1,{2,3}}.tar::c.tar"),
            (std::vector<std::string>{"a.tar", "b-1.tar", "b-2.tar", "b-3.tar", "c.tar"}));
  EXPECT_EQ(expand_shard_spec("lit{x}.tar"), (std::vector<std::string>{"lit{x}.tar"}));
  EXPECT_EQ(expand_shard_spec("{09..11}"), (std::vector<std::string>{"09", "10", "11"}));
}

TEST(TarDataset, StreamsWebDatasetShardsInOrder) {
  if (!clipguide::image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = fixture_dir("train_data");
  auto pixels = clipguide::read_safetensors(dir / "expected.safetensors").tensors;
  auto expected = expected_json(dir)["tar"];
  TarDataset data((dir / "shards").string() + "/shard-{000..001}.tar");
  ASSERT_EQ(data.num_shards(), 2);
  EXPECT_FALSE(data.indexable());
  EXPECT_EQ(data.size(), -1);
  size_t n = 0;
  for (int64_t shard = 0; shard < data.num_shards(); ++shard) {
    auto reader = data.open_shard(shard);
    int64_t position = 0;
    while (auto encoded = reader->next()) {
      ASSERT_LT(n, expected.size());
      EXPECT_EQ(encoded->shard, shard);
      EXPECT_EQ(encoded->position, position++);
      Sample s = data.decode(*encoded);
      EXPECT_EQ(s.key, expected[n][0].get<std::string>());
      EXPECT_EQ(s.caption, expected[n][1].get<std::string>());
      // PNG exactly; JPEG within a grey level (OpenImageIO and PIL may use different libjpeg builds).
      EXPECT_TRUE(test::tensors_close(s.image, pixels.at(expected[n][2].get<std::string>()), 2));
      ++n;
    }
  }
  EXPECT_EQ(n, expected.size());  // the sample without a caption was skipped
}

TEST(TarDataset, MissingShardAndCorruptImageAreNamed) {
  TarDataset data(std::vector<std::filesystem::path>{"/nonexistent/shard-7.tar"});
  expect_error([&] { data.open_shard(0); }, {"shard-7.tar", "does not exist"});
  EncodedSample bad;
  bad.image_name = "some.tar:000001.png";
  bad.image_bytes = "not a png";
  expect_error([&] { data.decode(bad); }, {"some.tar:000001.png"});
}

TEST(ImageFolderDataset, SidecarCaptionsSortedAndRecursive) {
  if (!clipguide::image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = fixture_dir("train_data");
  auto pixels = clipguide::read_safetensors(dir / "expected.safetensors").tensors;
  auto expected = expected_json(dir)["folder"];
  expect_error([&] { ImageFolderDataset data(dir / "folder"); }, {"uncaptioned.png", "uncaptioned.txt"});
  ImageFolderOptions options;
  options.skip_uncaptioned = true;
  ImageFolderDataset data(dir / "folder", options);
  ASSERT_EQ(data.size(), static_cast<int64_t>(expected.size()));
  for (int64_t i = 0; i < data.size(); ++i) {
    Sample s = data.get(i);
    EXPECT_EQ(s.key, expected[i][0].get<std::string>());
    EXPECT_EQ(s.caption, expected[i][1].get<std::string>());  // whitespace trimmed
    EXPECT_TRUE(test::tensors_close(s.image, pixels.at(expected[i][2].get<std::string>()), 2));
  }
}

TEST(StridedPart, DisjointCover) {
  EXPECT_EQ(strided_part(7, 1, 3), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(strided_part(7, 0, 3), (std::vector<int64_t>{0, 3, 6}));
  expect_error([] { strided_part(7, 3, 3); }, {"part 3 of 3"});
}

TEST(OpenDataset, PicksTheKindFromTheSpec) {
  auto dir = fixture_dir("train_data");
  EXPECT_NE(open_dataset("shapes")->describe().find("train"), std::string::npos);
  EXPECT_NE(open_dataset("shapes:heldout")->describe().find("held-out"), std::string::npos);
  expect_error([] { open_dataset("shapes:test"); }, {"shapes:test", "train or heldout"});
  auto tar = open_dataset((dir / "shards").string() + "/shard-{000..001}.tar");
  EXPECT_FALSE(tar->indexable());
  EXPECT_EQ(tar->num_shards(), 2);
  OpenDatasetOptions options;
  options.folder.skip_uncaptioned = true;
  EXPECT_EQ(open_dataset((dir / "folder").string(), options)->size(), 3);
  EXPECT_EQ(open_dataset((dir / "manifest.tsv").string())->size(), 3);
  expect_error([&] { open_dataset((dir / "nothing_here").string()); }, {"nothing_here", "is not"});
}

}  // namespace
}  // namespace clipguide::train
