// Tests for clipnet/train/loader: batch shapes and normalisation, the same batches whatever the number
// of workers, epochs, disjoint rank shards (indexable, infinite and tar), errors reaching next() with the
// file named, shutdown with work in flight, and resuming at a batch without decoding the skipped ones.
#include "clipnet/train/loader.h"

#include "clipnet/train/shapes_world.h"
#include "core/error.h"
#include "core/image_io.h"
#include "test_util.h"

#include <ATen/Parallel.h>
#include <ATen/ops/stack.h>

#include <atomic>
#include <fstream>
#include <set>

namespace clipguide::train {
namespace {

std::shared_ptr<const Dataset> shapes(int64_t size = -1) {
  ShapesWorldOptions o;
  o.size = size;
  return std::make_shared<ShapesWorld>(o);
}

// Every batch of `epochs` epochs (nullopt markers included, as empty batches with epoch -1).
std::vector<Batch> drain(const std::shared_ptr<const Dataset>& data, LoaderOptions o, int epochs) {
  Loader loader(data, o);
  std::vector<Batch> out;
  for (int e = 0; e < epochs;) {
    auto b = loader.next();
    if (!b) {
      out.push_back(Batch{at::Tensor(), {}, {}, -1});
      ++e;
      continue;
    }
    out.push_back(std::move(*b));
  }
  return out;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].epoch, b[i].epoch) << "batch " << i;
    EXPECT_EQ(a[i].keys, b[i].keys) << "batch " << i;
    EXPECT_EQ(a[i].captions, b[i].captions) << "batch " << i;
    if (a[i].images.defined()) {
      EXPECT_TRUE(a[i].images.equal(b[i].images)) << "batch " << i;
    }
  }
}

TEST(Loader, ShapesAndNormalisation) {
  LoaderOptions o;
  o.batch_size = 6;
  o.image_size = 64;
  o.num_workers = 2;
  o.scale = {1.0, 1.0};  // whole image, no resampling: exact comparison
  o.ratio = {1.0, 1.0};
  auto data = shapes();
  Loader loader(data, o);
  auto batch = loader.next();
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->images.sizes(), (c10::IntArrayRef{6, 3, 64, 64}));
  EXPECT_EQ(batch->images.scalar_type(), at::kFloat);
  ASSERT_EQ(batch->captions.size(), 6u);
  std::vector<at::Tensor> raw;
  for (int64_t i = 0; i < 6; ++i) {
    Sample s = data->get(i);  // world_size 1, infinite: indices 0, 1, 2, ...
    EXPECT_EQ(batch->captions[i], s.caption);
    EXPECT_EQ(batch->keys[i], s.key);
    raw.push_back(s.image.to(at::kFloat) / 255);
  }
  auto mean = at::tensor(std::vector<double>(o.mean.begin(), o.mean.end()), at::kFloat).view({1, 3, 1, 1});
  auto std = at::tensor(std::vector<double>(o.std.begin(), o.std.end()), at::kFloat).view({1, 3, 1, 1});
  EXPECT_TENSOR_CLOSE(batch->images * std + mean, at::stack(raw), 1e-6, 0);
}

TEST(Loader, AugmentationCropsAndResizes) {
  at::Tensor image = ShapesWorld().get(3).image;  // (3, 64, 64)
  LoaderOptions o;
  o.image_size = 32;
  auto a = Loader::transform(image, o, 1), b = Loader::transform(image, o, 1), c = Loader::transform(image, o, 2);
  EXPECT_EQ(a.sizes(), (c10::IntArrayRef{3, 32, 32}));
  EXPECT_TRUE(a.equal(b));
  EXPECT_FALSE(a.equal(c));
  o.augment = false;  // evaluation: resize + centre crop, no randomness
  EXPECT_TRUE(Loader::transform(image, o, 1).equal(Loader::transform(image, o, 2)));
  // A tall image: the fallback and regular paths both give S x S.
  at::Tensor tall = image.repeat({1, 4, 1});  // (3, 256, 64)
  o.augment = true;
  EXPECT_EQ(Loader::transform(tall, o, 5).sizes(), (c10::IntArrayRef{3, 32, 32}));
}

TEST(Loader, SameBatchesWhateverTheWorkerCount) {
  LoaderOptions o;
  o.batch_size = 8;
  o.image_size = 48;
  auto data = shapes(43);  // 5 full batches, 3 samples dropped per epoch
  o.num_workers = 0;
  auto serial = drain(data, o, 2);
  ASSERT_EQ(serial.size(), 12u);  // 5 batches + end marker, twice
  EXPECT_EQ(serial[5].epoch, -1);
  EXPECT_EQ(serial[6].epoch, 1);
  EXPECT_NE(serial[0].keys, serial[6].keys);  // reshuffled per epoch
  for (int workers : {1, 3}) {
    SCOPED_TRACE(workers);
    o.num_workers = workers;
    expect_same_batches(serial, drain(data, o, 2));
  }
  // Each epoch covers distinct samples.
  std::set<std::string> seen;
  for (int i = 0; i < 5; ++i) seen.insert(serial[i].keys.begin(), serial[i].keys.end());
  EXPECT_EQ(seen.size(), 40u);
}

TEST(Loader, EpochsAndPartialBatches) {
  LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 16;
  o.num_workers = 2;
  o.drop_last = false;
  o.start_epoch = 3;
  Loader loader(shapes(10), o);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  EXPECT_EQ(loader.epoch(), 3);
  std::vector<int64_t> sizes;
  while (auto b = loader.next()) {
    EXPECT_EQ(b->epoch, 3);
    sizes.push_back(b->images.size(0));
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(loader.epoch(), 4);
  auto b = loader.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->epoch, 4);
  LoaderStats stats = loader.stats();
  EXPECT_EQ(stats.batches, 4);
  EXPECT_EQ(stats.samples, 14);
  EXPECT_GT(stats.samples_per_s(), 0);
  EXPECT_GE(stats.wait_s, 0);
  EXPECT_LE(stats.wait_s, stats.elapsed_s);
}

TEST(Loader, RanksSeeDisjointShards) {
  LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 16;
  o.num_workers = 2;
  o.world_size = 3;
  for (int64_t size : {50, -1}) {
    SCOPED_TRACE(size);
    std::set<std::string> all;
    size_t total = 0;
    for (int64_t rank = 0; rank < 3; ++rank) {
      o.rank = rank;
      Loader loader(shapes(size), o);
      for (int k = 0; k < 4; ++k) {  // 50 / 3 = 16 samples per rank: 4 batches
        auto b = loader.next();
        ASSERT_TRUE(b);
        all.insert(b->keys.begin(), b->keys.end());
        total += b->keys.size();
      }
      if (size > 0) {
        EXPECT_FALSE(loader.next());
      }
    }
    EXPECT_EQ(total, 48u);
    EXPECT_EQ(all.size(), total);  // no sample on two ranks
  }
  o.rank = 3;
  EXPECT_THROW(Loader(shapes(), o), Error);
}

TEST(Loader, TarShardsAcrossWorkersAndRanks) {
  if (!clipguide::image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = test::fixture_dir("train_data");
  auto data = std::make_shared<TarDataset>((dir / "shards").string() + "/shard-{000..001}.tar");
  LoaderOptions o;
  o.batch_size = 2;
  o.image_size = 24;
  o.drop_last = false;
  o.shuffle_buffer = 3;
  o.num_workers = 0;
  auto serial = drain(data, o, 2);
  std::set<std::string> keys;
  size_t epoch0 = 0;
  for (const auto& b : serial) {
    if (b.epoch == 0) {
      keys.insert(b.keys.begin(), b.keys.end());
      epoch0 += b.keys.size();
    }
  }
  EXPECT_EQ(epoch0, 6u);
  EXPECT_EQ(keys, (std::set<std::string>{"000000", "000001", "000002", "000003", "sub/000005", "000006"}));
  o.num_workers = 2;
  expect_same_batches(serial, drain(data, o, 2));

  // Two ranks: one shard each, together everything once.
  o.world_size = 2;
  std::set<std::string> by_rank[2];
  for (int64_t rank = 0; rank < 2; ++rank) {
    o.rank = rank;
    Loader loader(data, o);
    while (auto b = loader.next()) by_rank[rank].insert(b->keys.begin(), b->keys.end());
  }
  std::set<std::string> both = by_rank[0];
  both.insert(by_rank[1].begin(), by_rank[1].end());
  EXPECT_EQ(both, keys);
  EXPECT_EQ(by_rank[0].size() + by_rank[1].size(), keys.size());
  // Fixed-length epochs: both ranks give exactly 4 batches (re-reading their shard), then end the epoch.
  o.stream_epoch_batches = 4;
  for (int64_t rank = 0; rank < 2; ++rank) {
    o.rank = rank;
    Loader loader(data, o);
    EXPECT_EQ(loader.batches_per_epoch(), 4);
    for (int k = 0; k < 4; ++k) {
      auto b = loader.next();
      ASSERT_TRUE(b);
      EXPECT_EQ(b->keys.size(), 2u);
      for (const auto& key : b->keys) EXPECT_TRUE(by_rank[rank].count(key)) << key;
    }
    EXPECT_FALSE(loader.next());
    EXPECT_EQ(loader.epoch(), 1);
  }
  o.stream_epoch_batches = 0;
  o.world_size = 3;
  o.rank = 0;
  EXPECT_THROW(Loader(data, o), Error);  // 2 shards cannot feed 3 ranks
}

TEST(Loader, UnreadableImageReachesNextWithItsFile) {
  if (!clipguide::image_io_available()) GTEST_SKIP() << "built without OpenImageIO";
  auto dir = test::temp_dir();
  clipguide::write_image(dir / "good.png", ShapesWorld().get(0).image);
  std::ofstream(dir / "broken.png") << "this is not a png";
  {
    std::ofstream m(dir / "m.tsv");
    m << "filepath\ttitle\n";
    for (int i = 0; i < 5; ++i) m << "good.png\tfine\n";
    m << "broken.png\tbroken\n";
    for (int i = 0; i < 6; ++i) m << "good.png\tfine\n";
  }
  auto data = std::make_shared<CsvDataset>(dir / "m.tsv");
  for (int workers : {0, 3}) {
    SCOPED_TRACE(workers);
    LoaderOptions o;
    o.batch_size = 4;
    o.image_size = 16;
    o.num_workers = workers;
    o.shuffle = false;
    Loader loader(data, o);
    ASSERT_TRUE(loader.next());  // rows 0-3
    for (int attempt = 0; attempt < 2; ++attempt) {  // rows 4-7 hold the broken file; the error sticks
      try {
        loader.next();
        ADD_FAILURE() << "no error";
      } catch (const Error& e) {
        const std::string text = e.what();
        EXPECT_NE(text.find("broken.png"), std::string::npos) << text;
        EXPECT_NE(text.find("m.tsv:7"), std::string::npos) << text;
      }
    }
  }
}

// Counts the images it decodes (get() and decode()), passing everything through to another dataset.
class CountingDataset : public Dataset {
 public:
  explicit CountingDataset(std::shared_ptr<const Dataset> inner) : inner_(std::move(inner)) {}
  int64_t size() const override { return inner_->size(); }
  bool indexable() const override { return inner_->indexable(); }
  Sample get(int64_t index) const override {
    ++decoded;
    return inner_->get(index);
  }
  int64_t num_shards() const override { return inner_->num_shards(); }
  std::unique_ptr<ShardReader> open_shard(int64_t shard) const override { return inner_->open_shard(shard); }
  Sample decode(const EncodedSample& encoded) const override {
    ++decoded;
    return inner_->decode(encoded);
  }
  std::string describe() const override { return inner_->describe(); }
  mutable std::atomic<int64_t> decoded{0};

 private:
  std::shared_ptr<const Dataset> inner_;
};

// Loader(start_batch = k) gives what an unskipped loader gives after its first k batches, and decodes
// only the samples it returns (no workers, so nothing is decoded ahead).
void expect_fast_skip(const std::shared_ptr<const Dataset>& inner, LoaderOptions o, int64_t k, int epochs) {
  SCOPED_TRACE("start_batch " + std::to_string(k));
  std::vector<Batch> full = drain(inner, o, epochs);
  full.erase(full.begin(), full.begin() + k);
  auto counting = std::make_shared<CountingDataset>(inner);
  o.start_batch = k;
  o.num_workers = 0;
  const std::vector<Batch> skipped = drain(counting, o, epochs);
  expect_same_batches(full, skipped);
  int64_t returned = 0;
  for (const auto& b : skipped) returned += static_cast<int64_t>(b.keys.size());
  EXPECT_EQ(counting->decoded.load(), returned);  // the k skipped batches were never decoded
  o.num_workers = 2;
  expect_same_batches(full, drain(inner, o, epochs));
}

TEST(Loader, StartBatchSkipsWithoutDecoding) {
  LoaderOptions o;
  o.batch_size = 8;
  o.image_size = 24;
  o.start_epoch = 1;
  auto finite = shapes(43);  // 5 batches per epoch
  for (int64_t k : {0, 2, 5}) expect_fast_skip(finite, o, k, 2);
  o.start_batch = 6;
  EXPECT_THROW(Loader(finite, o), Error);  // past the end of the epoch
  o.start_batch = 0;

  // Infinite: the rank-local counter moves on; two ranks stay disjoint.
  {
    auto counting = std::make_shared<CountingDataset>(shapes());
    Loader plain(shapes(), o);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(plain.next());
    LoaderOptions s = o;
    s.start_batch = 3;
    s.num_workers = 0;
    Loader skipped(counting, s);
    for (int i = 0; i < 2; ++i) {
      auto a = plain.next(), b = skipped.next();
      ASSERT_TRUE(a && b);
      EXPECT_EQ(a->keys, b->keys);
      EXPECT_TRUE(a->images.equal(b->images));
    }
    EXPECT_EQ(counting->decoded.load(), 16);
  }

  if (!clipguide::image_io_available()) GTEST_SKIP() << "built without OpenImageIO: tar shards not checked";
  auto dir = test::fixture_dir("train_data");
  auto tar = std::make_shared<TarDataset>((dir / "shards").string() + "/shard-{000..001}.tar");
  LoaderOptions t;
  t.batch_size = 2;
  t.image_size = 24;
  t.drop_last = false;
  t.shuffle_buffer = 3;
  for (int64_t k : {1, 3}) expect_fast_skip(tar, t, k, 2);  // 3 batches per epoch: k = 3 ends it at once
  t.stream_epoch_batches = 4;  // fixed-length epochs re-read the shards
  for (int64_t k : {2, 4}) expect_fast_skip(tar, t, k, 2);
  t.start_batch = 5;
  EXPECT_THROW(Loader(tar, t), Error);
  t.stream_epoch_batches = 0;
  t.start_batch = 4;
  EXPECT_THROW(Loader(tar, t), Error);  // the stream's epoch has 3 batches
}

TEST(Loader, WorkersLeaveTheCallersAtenThreadsAlone) {
  const int before = at::get_num_threads();
  LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 16;
  o.num_workers = 2;
  Loader loader(shapes(), o);
  ASSERT_TRUE(loader.next());
  EXPECT_EQ(at::get_num_threads(), before);
}

TEST(Loader, ShutsDownWithWorkInFlight) {
  LoaderOptions o;
  o.batch_size = 16;
  o.image_size = 64;
  o.num_workers = 4;
  { Loader idle(shapes(), o); }  // destroyed before any next()
  {
    Loader busy(shapes(), o);
    ASSERT_TRUE(busy.next());
  }  // workers blocked on a full queue or mid-batch must all exit
  SUCCEED();
}

}  // namespace
}  // namespace clipguide::train
