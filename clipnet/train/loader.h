// The training data loader: worker threads decode and augment (random resized crop, resize, normalise)
// batches ahead of the trainer into a bounded queue. Batches come out in a fixed order: their content
// depends on (dataset, options) only, never on thread timing or the number of workers.
// Shapes: B batch, S output side.
#pragma once

#include "clipnet/preprocess.h"
#include "clipnet/train/dataset.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace clipguide::train {

// One training batch.
struct Batch {
  at::Tensor images;                  // (B, 3, S, S) float, normalised with the loader's mean/std
  std::vector<std::string> captions;  // B captions, in image order
  std::vector<std::string> keys;      // B sample keys (Sample::key)
  int64_t epoch = 0;                  // the epoch it belongs to
};

// Loader settings (open_clip's training defaults where it has them).
struct LoaderOptions {
  int64_t batch_size = 64;         // B
  int64_t image_size = 224;        // S
  int num_workers = 4;             // decoding threads; 0 decodes on the caller's thread inside next()
  int prefetch = 2;                // ready or in-flight batches allowed per worker (at least 2 in all)
  bool augment = true;             // random resized crop (training) or shortest-side resize + centre crop
  std::array<double, 2> scale = {0.9, 1.0};             // crop area as a fraction of the image
  std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0};  // crop aspect ratio range
  std::array<double, 3> mean = clipnet::kOpenAiMean;     // per-channel normalisation
  std::array<double, 3> std = clipnet::kOpenAiStd;
  bool shuffle = true;             // finite indexable: a permutation per epoch; streams: shard order and buffer
  int64_t shuffle_buffer = 1000;   // streams: samples held to shuffle from (0 or 1: shard order only)
  bool drop_last = true;           // drop an epoch's last incomplete batch
  int64_t stream_epoch_batches = 0;  // streams: 0 = an epoch is one pass over this rank's shards; N = exactly
                                     // N batches, re-reading the shards as needed (keeps ranks in step)
  uint64_t seed = 0;               // all shuffling and augmentation follow from it
  // Rank r of world_size reads a disjoint part: floor(N / world_size) samples of a finite indexable dataset
  // (the same count on every rank), every world_size-th index of an infinite one, every world_size-th
  // shard of a stream (per epoch, after the shard order is shuffled).
  int64_t rank = 0;                // this process's part
  int64_t world_size = 1;          // number of parts
  int64_t start_epoch = 0;         // first epoch (resuming)
  int64_t start_batch = 0;         // batches of start_epoch already consumed (resuming): skipped without
                                   // decoding (indexable: their indices are passed over; streams: their
                                   // samples are read through the shuffle buffer, images left encoded)
};

// Throughput so far, for logs.
struct LoaderStats {
  int64_t batches = 0;        // returned by next()
  int64_t samples = 0;        // images in them
  double elapsed_s = 0;       // from the first next() call to the latest return
  double wait_s = 0;          // time next() spent waiting for workers (0 when they keep ahead)
  double samples_per_s() const { return elapsed_s > 0 ? static_cast<double>(samples) / elapsed_s : 0; }
};

class Loader {
 public:
  // Starts the workers, which begin filling the queue at once. `dataset` is shared with them.
  Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options = {});
  // Stops and joins the workers (batches still queued are dropped).
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch, or nullopt at the end of an epoch (the following call starts the next epoch).
  // Infinite datasets never end an epoch. An error while reading or decoding a sample (naming the file)
  // is rethrown here, in order, and again on every later call.
  std::optional<Batch> next();

  // The epoch the next batch belongs to.
  int64_t epoch() const { return epoch_; }
  // Batches per epoch for this rank: known for finite indexable datasets and for streams with
  // stream_epoch_batches, -1 otherwise.
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  LoaderStats stats() const;
  const LoaderOptions& options() const { return options_; }

  // One sample's augmentation, for tests: (3, H, W) uint8 → (3, S, S) float normalised, random draws
  // from `aug_seed` (the loader uses mix_seed({seed, epoch, sample id})).
  static at::Tensor transform(const at::Tensor& image, const LoaderOptions& options, uint64_t aug_seed);

 private:
  // A batch's worth of work, claimed in order by the workers.
  struct Job {
    int64_t seq = 0;                     // position in the output order
    int64_t epoch = 0;
    bool end_of_epoch = false;           // marker: next() returns nullopt
    std::vector<int64_t> indices;        // indexable: sample indices
    std::vector<EncodedSample> encoded;  // streams: samples read in order, not decoded
    std::vector<int64_t> passes;         // streams: which pass over the shards each sample came from
  };
  struct Result {
    std::optional<Batch> batch;  // none: an end-of-epoch marker (or an error)
    std::exception_ptr error;
    int64_t epoch = 0;
  };
  struct StreamState;

  void worker_loop();
  Job claim_job();                    // caller holds claim_mutex_
  void fill_stream_job(Job& job);     // caller holds claim_mutex_
  void start_epoch_plan(int64_t epoch);  // caller holds claim_mutex_
  void skip_batches(int64_t n);          // constructor only: passes over options_.start_batch batches
  Result run_job(const Job& job) const;

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  int64_t capacity_ = 2;  // jobs allowed between the consumer and the newest claimed one
  int64_t batches_per_epoch_ = -1;

  // Planning (claim side): guarded by claim_mutex_.
  std::mutex claim_mutex_;
  int64_t next_seq_ = 0;
  int64_t plan_epoch_ = 0;
  std::vector<int64_t> plan_indices_;  // finite indexable: this rank's indices for plan_epoch_
  int64_t plan_pos_ = 0;               // next position in plan_indices_ (or rank-local counter when infinite)
  bool plan_done_ = false;             // the epoch's last batch has been claimed
  std::unique_ptr<StreamState> stream_;

  // Results (consumer side): guarded by mutex_.
  mutable std::mutex mutex_;
  std::condition_variable ready_cv_;  // a result arrived
  std::condition_variable space_cv_;  // the consumer took one: workers may claim more
  std::map<int64_t, Result> results_;
  int64_t delivered_ = 0;             // seq of the next result next() returns
  bool stop_ = false;
  std::exception_ptr failed_;         // sticky error
  int64_t epoch_ = 0;
  LoaderStats stats_;
  std::optional<std::chrono::steady_clock::time_point> first_call_;

  std::vector<std::thread> workers_;
};

}  // namespace clipguide::train
