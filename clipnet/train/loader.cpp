// The loader (loader.h). Work is planned in batch-sized jobs, numbered in output order: a worker claims
// the next job (for streams this reads the samples' bytes, in order, under the claim lock), decodes and
// augments it outside the lock, and files the result under its number; next() hands results out by
// number. Claims stop `capacity_` jobs ahead of the consumer, which bounds memory.
#include "clipnet/train/loader.h"

#include "clipnet/train/random.h"
#include "core/error.h"

#include <ATen/Parallel.h>
#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <deque>

#include <dlfcn.h>

namespace clipguide::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Fisher-Yates with our own draws (std::shuffle's algorithm differs between standard libraries).
void shuffle_in_place(std::vector<int64_t>& v, Rng& rng) {
  for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) std::swap(v[i], v[rng.below(i + 1)]);
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Purposes of the random streams below (one stream per purpose and epoch).
enum Stream : uint64_t { kOrder = 0x0D, kBuffer = 0xB0, kAugment = 0xA0 };

// Makes ATen run single-threaded on the calling (worker) thread. Workers handle small images, where
// ATen's intra-op OpenMP team only adds hand-offs; on a busy machine a descheduled team thread stalls a
// worker for milliseconds, and N workers x M team threads oversubscribe the cores the trainer needs.
// OpenMP's thread count is per thread, so other threads (the trainer's) keep theirs. LibTorch builds
// without OpenMP lack the symbol; then nothing changes.
void single_threaded_aten() {
  at::get_num_threads();  // LibTorch's lazy per-thread initialisation first, so it cannot undo this
  using SetNumThreads = void (*)(int);
  static const auto set_num_threads = reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set_num_threads) set_num_threads(1);
}

}  // namespace

// Streams: this rank's shards for the epoch, the open shard and the shuffle buffer.
struct Loader::StreamState {
  std::vector<int64_t> shards;  // this rank's shards, in reading order
  size_t next_shard = 0;
  std::unique_ptr<ShardReader> reader;
  std::deque<std::pair<EncodedSample, int64_t>> buffer;  // samples and the pass that read them
  int64_t pass = 0;        // passes over the shards started this epoch, minus one
  int64_t read_in_pass = 0;  // samples read in the current pass
  Rng rng{0};
  bool exhausted = false;  // every shard read to the end
  int64_t batches = 0;     // full or partial batches claimed this epoch
};

Loader::Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  if (!dataset_) throw Error("Loader: no dataset");
  const LoaderOptions& o = options_;
  if (o.batch_size < 1 || o.image_size < 1) {
    throw Error("Loader: batch_size and image_size must be positive, got " + std::to_string(o.batch_size) + " and " +
                std::to_string(o.image_size));
  }
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    throw Error("Loader: rank " + std::to_string(o.rank) + " of world_size " + std::to_string(o.world_size) +
                ": expected 0 <= rank < world_size");
  }
  if (o.num_workers < 0) throw Error("Loader: num_workers must be 0 or more");
  if (!(0 < o.scale[0] && o.scale[0] <= o.scale[1] && o.scale[1] <= 1) || !(0 < o.ratio[0] && o.ratio[0] <= o.ratio[1])) {
    throw Error("Loader: crop scale must satisfy 0 < min <= max <= 1 and ratio 0 < min <= max");
  }
  capacity_ = std::max<int64_t>(2, static_cast<int64_t>(o.prefetch) * std::max(1, o.num_workers));
  if (dataset_->indexable()) {
    if (dataset_->size() >= 0) {
      const int64_t per_rank = dataset_->size() / o.world_size;  // equal shares: ranks step in lockstep
      batches_per_epoch_ = o.drop_last ? per_rank / o.batch_size : (per_rank + o.batch_size - 1) / o.batch_size;
      if (batches_per_epoch_ == 0) {
        throw Error("Loader: " + dataset_->describe() + " gives each of " + std::to_string(o.world_size) +
                    " ranks " + std::to_string(per_rank) + " samples, not one batch of " + std::to_string(o.batch_size));
      }
    }
  } else {
    if (dataset_->num_shards() < o.world_size) {
      throw Error("Loader: " + dataset_->describe() + " has " + std::to_string(dataset_->num_shards()) +
                  " shards, fewer than the " + std::to_string(o.world_size) + " ranks that must each read their own");
    }
    stream_ = std::make_unique<StreamState>();
    if (o.stream_epoch_batches > 0) batches_per_epoch_ = o.stream_epoch_batches;
  }
  epoch_ = o.start_epoch;
  start_epoch_plan(o.start_epoch);
  skip_batches(o.start_batch);
  for (int w = 0; w < o.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_cv_.notify_all();
  ready_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void Loader::start_epoch_plan(int64_t epoch) {
  plan_epoch_ = epoch;
  plan_pos_ = 0;
  plan_done_ = false;
  const LoaderOptions& o = options_;
  if (dataset_->indexable()) {
    if (dataset_->size() < 0) return;  // infinite: rank-local counter only
    std::vector<int64_t> order = iota(dataset_->size());
    if (o.shuffle) {
      Rng rng(mix_seed({o.seed, static_cast<uint64_t>(epoch), kOrder}));
      shuffle_in_place(order, rng);
    }
    const int64_t per_rank = dataset_->size() / o.world_size;
    plan_indices_.clear();
    for (int64_t k = 0; k < per_rank; ++k) plan_indices_.push_back(order[k * o.world_size + o.rank]);
    return;
  }
  std::vector<int64_t> shards = iota(dataset_->num_shards());
  if (o.shuffle) {
    Rng rng(mix_seed({o.seed, static_cast<uint64_t>(epoch), kOrder}));
    shuffle_in_place(shards, rng);
  }
  StreamState& s = *stream_;
  s.shards.clear();
  for (int64_t k : strided_part(static_cast<int64_t>(shards.size()), o.rank, o.world_size)) s.shards.push_back(shards[k]);
  s.next_shard = 0;
  s.reader.reset();
  s.buffer.clear();
  s.rng = Rng(mix_seed({o.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(o.rank), kBuffer}));
  s.exhausted = false;
  s.pass = 0;
  s.read_in_pass = 0;
  s.batches = 0;
}

void Loader::skip_batches(int64_t n) {
  const LoaderOptions& o = options_;
  if (n < 0) throw Error("Loader: start_batch must be 0 or more, got " + std::to_string(n));
  if (n == 0) return;
  if (batches_per_epoch_ >= 0 && n > batches_per_epoch_) {
    throw Error("Loader: start_batch " + std::to_string(n) + " is past the end of an epoch of " +
                std::to_string(batches_per_epoch_) + " batches");
  }
  if (dataset_->indexable()) {
    // The plan is a list of indices (or a counter): skipping is moving the position.
    plan_pos_ = n * o.batch_size;
    if (dataset_->size() >= 0) plan_pos_ = std::min<int64_t>(plan_pos_, static_cast<int64_t>(plan_indices_.size()));
    return;
  }
  // Streams: the batches' samples must go through the reader and the shuffle buffer to leave both where
  // the uninterrupted run had them; their images stay encoded (run_job, which decodes, never sees them).
  std::lock_guard<std::mutex> claim(claim_mutex_);
  for (int64_t i = 0; i < n; ++i) {
    const Job job = claim_job();
    if (job.end_of_epoch) {
      throw Error("Loader: start_batch " + std::to_string(n) + " is past the end of epoch " +
                  std::to_string(job.epoch) + " of " + dataset_->describe() + " (" + std::to_string(i) + " batches)");
    }
  }
  next_seq_ = 0;  // sequence numbers count delivered output only
}

Loader::Job Loader::claim_job() {
  Job job;
  job.seq = next_seq_++;
  if (plan_done_) start_epoch_plan(plan_epoch_ + 1);
  job.epoch = plan_epoch_;
  const LoaderOptions& o = options_;
  if (!dataset_->indexable()) {
    fill_stream_job(job);
    return job;
  }
  if (dataset_->size() < 0) {
    for (int64_t k = 0; k < o.batch_size; ++k) job.indices.push_back((plan_pos_++) * o.world_size + o.rank);
    return job;
  }
  const int64_t remaining = static_cast<int64_t>(plan_indices_.size()) - plan_pos_;
  if (remaining == 0 || (o.drop_last && remaining < o.batch_size)) {
    job.end_of_epoch = true;
    plan_done_ = true;
    return job;
  }
  const int64_t take = std::min(remaining, o.batch_size);
  job.indices.assign(plan_indices_.begin() + plan_pos_, plan_indices_.begin() + plan_pos_ + take);
  plan_pos_ += take;
  return job;
}

void Loader::fill_stream_job(Job& job) {
  StreamState& s = *stream_;
  const LoaderOptions& o = options_;
  const size_t buffer_size = o.shuffle ? static_cast<size_t>(std::max<int64_t>(1, o.shuffle_buffer)) : 1;
  const bool fixed = o.stream_epoch_batches > 0;
  if (fixed && s.batches == o.stream_epoch_batches) {
    job.end_of_epoch = true;
    plan_done_ = true;
    return;
  }
  while (static_cast<int64_t>(job.encoded.size()) < o.batch_size) {
    // Top the buffer up from the shards, in order.
    while (s.buffer.size() < buffer_size && !s.exhausted) {
      if (!s.reader) {
        if (s.next_shard == s.shards.size()) {
          // A fixed-length epoch reads the shards again, unless a whole pass found nothing.
          if (!fixed || s.read_in_pass == 0) {
            s.exhausted = true;
            break;
          }
          s.next_shard = 0;
          ++s.pass;
          s.read_in_pass = 0;
        }
        s.reader = dataset_->open_shard(s.shards[s.next_shard++]);
      }
      if (auto sample = s.reader->next()) {
        s.buffer.emplace_back(std::move(*sample), s.pass);
        ++s.read_in_pass;
      } else {
        s.reader.reset();
      }
    }
    if (s.buffer.empty()) break;
    // Take a random buffered sample (without shuffling the buffer holds one: taken in order).
    std::swap(s.buffer[static_cast<size_t>(s.rng.below(static_cast<int64_t>(s.buffer.size())))], s.buffer.back());
    job.encoded.push_back(std::move(s.buffer.back().first));
    job.passes.push_back(s.buffer.back().second);
    s.buffer.pop_back();
  }
  if (job.encoded.empty() || (o.drop_last && static_cast<int64_t>(job.encoded.size()) < o.batch_size)) {
    if (s.batches == 0) {
      throw Error("Loader: rank " + std::to_string(o.rank) + " read no complete batch of " +
                  std::to_string(o.batch_size) + " from its shards of " + dataset_->describe() + " in epoch " +
                  std::to_string(plan_epoch_));
    }
    job.encoded.clear();
    job.end_of_epoch = true;
    plan_done_ = true;
    return;
  }
  ++s.batches;
}

namespace {

// (3, H, W) uint8 → (3, S, S) float in [0, 1]: the crop and resize of Loader::transform, before normalising
// (which run_job does once per batch).
at::Tensor crop_and_resize(const at::Tensor& image, const LoaderOptions& o, uint64_t aug_seed) {
  if (image.dim() != 3 || image.size(0) != 3 || image.scalar_type() != at::kByte) {
    throw Error("expected a (3, H, W) uint8 image, got " + shape_str(image.sizes()) + " " +
                std::string(c10::toString(image.scalar_type())));
  }
  const int64_t height = image.size(1), width = image.size(2), s = o.image_size;
  at::Tensor out;  // (1, 3, S, S) in [0, 1]
  if (o.augment) {
    // torchvision's RandomResizedCrop.get_params: 10 tries at a random area and log-uniform aspect ratio,
    // then the largest centred crop within the ratio range. Python's round() is round-half-even.
    Rng rng(aug_seed);
    const double area = static_cast<double>(height * width);
    int64_t top = 0, left = 0, h = height, w = width;
    bool found = false;
    for (int attempt = 0; attempt < 10 && !found; ++attempt) {
      const double target = area * rng.uniform(o.scale[0], o.scale[1]);
      const double aspect = std::exp(rng.uniform(std::log(o.ratio[0]), std::log(o.ratio[1])));
      const auto cw = static_cast<int64_t>(std::nearbyint(std::sqrt(target * aspect)));
      const auto ch = static_cast<int64_t>(std::nearbyint(std::sqrt(target / aspect)));
      if (0 < cw && cw <= width && 0 < ch && ch <= height) {
        top = rng.below(height - ch + 1);
        left = rng.below(width - cw + 1);
        h = ch;
        w = cw;
        found = true;
      }
    }
    if (!found) {
      const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
      if (in_ratio < o.ratio[0]) {
        w = width;
        h = static_cast<int64_t>(std::nearbyint(static_cast<double>(w) / o.ratio[0]));
      } else if (in_ratio > o.ratio[1]) {
        h = height;
        w = static_cast<int64_t>(std::nearbyint(static_cast<double>(h) * o.ratio[1]));
      }
      top = (height - h) / 2;
      left = (width - w) / 2;
    }
    at::Tensor crop = image.slice(1, top, top + h).slice(2, left, left + w).unsqueeze(0).to(at::kFloat).div_(255);
    out = (h == s && w == s) ? crop : at::_upsample_bicubic2d_aa(crop, {s, s}, /*align_corners=*/false).clamp_(0, 1);
  } else {
    out = clipnet::resize_center_crop(image.unsqueeze(0).to(at::kFloat).div_(255), s).clamp_(0, 1);
  }
  return out.squeeze(0);  // (3, S, S)
}

}  // namespace

at::Tensor Loader::transform(const at::Tensor& image, const LoaderOptions& o, uint64_t aug_seed) {
  return clipnet::normalize(crop_and_resize(image, o, aug_seed), o.mean, o.std);
}

Loader::Result Loader::run_job(const Job& job) const {
  Result result;
  result.epoch = job.epoch;
  if (job.end_of_epoch) return result;
  const LoaderOptions& o = options_;
  const bool indexable = dataset_->indexable();
  const int64_t n = indexable ? static_cast<int64_t>(job.indices.size()) : static_cast<int64_t>(job.encoded.size());
  Batch batch;
  batch.epoch = job.epoch;
  batch.images = at::empty({n, 3, o.image_size, o.image_size}, at::kFloat);  // (B, 3, S, S)
  for (int64_t k = 0; k < n; ++k) {
    const std::string what = indexable ? "sample " + std::to_string(job.indices[k])
                                       : "sample '" + job.encoded[k].key + "' (" + job.encoded[k].image_name + ")";
    try {
      Sample sample = indexable ? dataset_->get(job.indices[k]) : dataset_->decode(job.encoded[k]);
      // Each sample's crop is drawn from its own stream: same result on any worker, in any order.
      const uint64_t aug_seed =
          indexable ? mix_seed({o.seed, static_cast<uint64_t>(job.epoch), static_cast<uint64_t>(job.indices[k]), kAugment})
                    : mix_seed({o.seed, static_cast<uint64_t>(job.epoch), static_cast<uint64_t>(job.passes[k]),
                                static_cast<uint64_t>(job.encoded[k].shard),
                                static_cast<uint64_t>(job.encoded[k].position), kAugment});
      batch.images[k].copy_(crop_and_resize(sample.image, o, aug_seed));
      batch.captions.push_back(std::move(sample.caption));
      batch.keys.push_back(std::move(sample.key));
    } catch (const std::exception& e) {
      throw Error("loading " + what + " of " + dataset_->describe() + ": " + error_text(e));
    }
  }
  batch.images = clipnet::normalize(batch.images, o.mean, o.std);
  result.batch = std::move(batch);
  return result;
}

void Loader::worker_loop() {
  single_threaded_aten();
  for (;;) {
    Job job;
    Result result;
    {
      std::unique_lock<std::mutex> claim(claim_mutex_);
      {
        std::unique_lock<std::mutex> lock(mutex_);
        space_cv_.wait(lock, [&] { return stop_ || next_seq_ < delivered_ + capacity_; });
        if (stop_) return;
      }
      const int64_t seq = next_seq_;
      try {
        job = claim_job();
      } catch (...) {
        job = Job{};
        job.seq = seq;
        next_seq_ = seq + 1;
        result.error = std::current_exception();
      }
    }
    if (!result.error) {
      try {
        result = run_job(job);
      } catch (...) {
        result.error = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
      results_.emplace(job.seq, std::move(result));
    }
    ready_cv_.notify_all();
  }
}

std::optional<Batch> Loader::next() {
  const auto start = Clock::now();
  if (!first_call_) first_call_ = start;
  Result result;
  int64_t job_epoch = 0;
  if (workers_.empty()) {
    // No workers: claim and run the job here (same plan, same results as with workers).
    if (failed_) std::rethrow_exception(failed_);
    Job job;
    try {
      std::lock_guard<std::mutex> claim(claim_mutex_);
      job = claim_job();
    } catch (...) {
      failed_ = std::current_exception();
      std::rethrow_exception(failed_);
    }
    job_epoch = job.epoch;
    try {
      result = run_job(job);
    } catch (...) {
      result.error = std::current_exception();
    }
    // The caller waited for the whole decode: all of it counts as waiting for data.
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.wait_s += seconds_since(start);
    if (!result.error && !result.batch) {
      epoch_ = job_epoch + 1;
      return std::nullopt;
    }
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    if (failed_) std::rethrow_exception(failed_);
    const auto wait_start = Clock::now();
    ready_cv_.wait(lock, [&] { return results_.count(delivered_) > 0; });
    stats_.wait_s += seconds_since(wait_start);
    result = std::move(results_.at(delivered_));
    results_.erase(delivered_);
    ++delivered_;
    space_cv_.notify_all();
    if (!result.error && !result.batch) {
      // End-of-epoch marker: the next batch belongs to the following epoch.
      epoch_ = result.epoch + 1;
      stats_.elapsed_s = seconds_since(*first_call_);
      return std::nullopt;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (result.error) {
    failed_ = result.error;
    std::rethrow_exception(failed_);
  }
  epoch_ = result.batch->epoch;
  stats_.batches += 1;
  stats_.samples += result.batch->images.size(0);
  stats_.elapsed_s = seconds_since(*first_call_);
  return std::move(result.batch);
}

LoaderStats Loader::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace clipguide::train
