// CLIP pretraining: TrainOptions (open_clip's flags as a struct), the Trainer (AdamW with open_clip's
// no-decay rule, cosine schedule with linear warmup, gradient accumulation, bf16 autocast, data-parallel
// over a Communicator, atomic checkpoints with exact resume, JSON-lines log), and the pieces it is built
// from, exposed for tests: parameter groups, the schedule, checkpoint folders.
// Shapes: B per-rank batch, S image side, E embedding width.
#pragma once

#include "clipnet/clip_model.h"
#include "clipnet/tokenizer.h"
#include "clipnet/train/dataset.h"
#include "clipnet/train/distributed.h"
#include "clipnet/train/evaluation.h"
#include "clipnet/train/losses.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clipguide::train {

// Everything a training run is configured by (open_clip's defaults where they exist).
struct TrainOptions {
  std::string model = "ViT-B-32";         // built-in config name, path to a config JSON, or JSON text ("{...}")
  std::string train_data = "shapes";     // data spec (open_dataset: manifest, shards with "::" lists, folder, shapes)
  std::string dataset_type = "auto";      // auto | csv | webdataset | folder | shapes (checked against the spec)
  std::string csv_img_key = "filepath";   // manifest column with image paths
  std::string csv_caption_key = "title";  // manifest column with captions
  char csv_separator = '\t';              // manifest separator
  int64_t image_size = 0;                 // 0: the model config's vision image_size
  int64_t batch_size = 64;                // per rank, per micro-batch
  double lr = 5e-4;                       // peak learning rate
  double wd = 0.2;                        // AdamW weight decay (not on gains, biases, embeddings, logit scale)
  double beta1 = 0.9;                     // AdamW beta1
  double beta2 = 0.98;                    // AdamW beta2
  double eps = 1e-6;                      // AdamW epsilon
  int64_t warmup = 10000;                 // linear warmup steps
  int64_t epochs = 32;                    // epochs (used when steps == 0)
  int64_t train_num_samples = 0;          // samples per epoch for streams and infinite data (0: the dataset's size)
  int64_t steps = 0;                      // total optimiser steps; 0: epochs * steps per epoch
  std::string precision = "fp32";         // fp32 | bf16 (CPU autocast; fp32 master weights)
  int64_t accum_freq = 1;                 // micro-batches per step (open_clip's feature cache + recompute)
  bool grad_checkpointing = false;        // recompute transformer blocks / ResNet stages in backward (less memory)
  int shapes_group = 1;                   // shapes world: hard-negative groups of this many pictures
  std::string shapes_vary = "kind";       // shapes world: what a group varies (parse_shapes_variations)
  double shapes_shade = 0;                // shapes world: fraction of pictures in random shades of their colours
  std::string vocab;                      // BPE vocabulary file/folder; empty: train one from the captions
  int64_t bpe_vocab_size = 1024;          // size of the trained vocabulary
  int64_t bpe_captions = 5000;            // captions read to train it
  ContrastiveLossOptions loss;            // siglip / local_loss / gather_with_grad
  uint64_t seed = 0;                      // model init, data order and augmentation
  int workers = 2;                        // loader threads per rank
  std::filesystem::path checkpoint_dir;   // where checkpoints go (empty: none written)
  int64_t save_every_steps = 0;           // checkpoint every N steps (0: off)
  int64_t save_frequency = 1;             // checkpoint every N epochs (0: off)
  std::string resume;                     // checkpoint folder, or "latest" (checkpoint_dir's latest pointer)
  std::string pretrained;                 // start from these weights (load_clip: any CLIP file or folder), new optimiser
  std::filesystem::path log_file;         // JSON-lines log (empty: none)
  int64_t log_every_steps = 1;            // log and report every N steps
  std::string val_data = "shapes:heldout";  // evaluation data (shapes world: zero-shot per attribute)
  int64_t zeroshot_every_steps = 0;       // zero-shot evaluation every N steps (0: off); also at the end when > 0
  int64_t zeroshot_samples = 256;         // held-out pictures evaluated
  int64_t retrieval_k = 64;               // caption retrieval among K
  bool linear_probe = false;              // linear probe at the end (shapes world: shape kind)
};

// One logged step.
struct StepReport {
  int64_t step = 0;            // optimiser steps done
  int64_t total_steps = 0;
  int64_t epoch = 0;
  double loss = 0;             // mean over micro-batches (and ranks, for a local loss)
  double lr = 0;
  double logit_scale = 0;      // exp(scale parameter)
  double samples_per_s = 0;    // global (all ranks)
  double data_wait_s = 0;      // time this rank waited for the loader since the last report
};

// AdamW parameter groups by open_clip's rule: no decay when p.ndim < 2 or the name contains "bn", "ln",
// "bias" or "logit_scale" (gains, biases, positional/class embeddings, the scale). Names in order.
struct ParamGroups {
  std::vector<std::string> decay, no_decay;
};
ParamGroups split_param_groups(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters);

// open_clip's cosine_lr: lr * (step + 1) / warmup during warmup, then cosine from lr to 0 over the rest.
double cosine_lr(double base_lr, int64_t warmup, int64_t total_steps, int64_t step);

// What a checkpoint folder holds besides the weights.
struct CheckpointState {
  int64_t step = 0;             // optimiser steps done
  int64_t epoch = 0;            // loader epoch of the next batch
  int64_t batch_in_epoch = 0;   // batches of that epoch already consumed (by this rank)
};

// Resolves a --resume value: "latest" → checkpoint_dir/<contents of checkpoint_dir/latest>, else the path.
// Throws Error when it is not a checkpoint folder (no state.json).
std::filesystem::path resolve_checkpoint(const std::string& resume, const std::filesystem::path& checkpoint_dir);

class Trainer {
 public:
  // Builds the model, tokenizer (trained BPE when options.vocab is empty, or from the checkpoint when
  // resuming), optimiser and loader. comm: the process group (SingleProcess for one process).
  Trainer(TrainOptions options, std::shared_ptr<Communicator> comm);
  ~Trainer();

  // Trains to options.steps (or epochs), calling on_report every log_every_steps on every rank (the tool
  // prints on rank 0) and on_eval after each evaluation. Returns the loss of every step.
  std::vector<double> run(const std::function<void(const StepReport&)>& on_report = {},
                          const std::function<void(const EvalReport&)>& on_eval = {});

  // One optimiser step (accum_freq micro-batches from the loader). Returns the step's loss.
  double step();

  // One optimiser step on given micro-batches (benchmarks, other data pipelines): accum_freq each of
  // images (B, 3, S, S) normalised with the config's mean/std and tokens (B, L) from tokenizer(). The
  // loader's position does not move. Returns the step's loss.
  double train_step(const std::vector<at::Tensor>& images, const std::vector<at::Tensor>& tokens);

  // Writes checkpoint_dir/step_<N>/ atomically (a temporary folder renamed into place), then the `latest`
  // pointer (atomically). Rank 0 only; other ranks return at once. after_file (tests): called after each
  // file is written inside the temporary folder, to simulate a crash.
  std::filesystem::path save_checkpoint(const std::function<void(const std::string&)>& after_file = {});

  // Zero-shot evaluation on the shapes world's held-out split (every rank computes it; cheap at test sizes).
  EvalReport evaluate();

  clipnet::ClipModel& model() { return model_; }
  const clipnet::Tokenizer& tokenizer() const { return *tokenizer_; }
  const TrainOptions& options() const { return options_; }
  int64_t current_step() const { return state_.step; }
  int64_t total_steps() const { return total_steps_; }
  const clipnet::ClipConfig& config() const { return config_; }

 private:
  struct Impl;
  void load_checkpoint(const std::filesystem::path& folder);
  void make_loader();

  TrainOptions options_;
  std::shared_ptr<Communicator> comm_;
  clipnet::ClipConfig config_;
  clipnet::ClipModel model_{nullptr};
  std::optional<clipnet::Tokenizer> tokenizer_;
  std::filesystem::path vocab_folder_;  // where the tokenizer's files are (copied into checkpoints)
  at::Tensor logit_bias_;               // () SigLIP's learnable bias (saved as "logit_bias")
  std::unique_ptr<Impl> impl_;
  CheckpointState state_;
  int64_t total_steps_ = 0;
  int64_t steps_per_epoch_ = 0;
};

}  // namespace clipguide::train
