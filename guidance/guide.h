// Guide: the CLIP guidance loss as one object any LibTorch program can call, `loss = guide(image)` on
// (B, 3, H, W) in [0, 1] giving a differentiable scalar. An ensemble of CLIP members, each cutting out at
// its own resolution, normalising with its own mean/std and scoring against its own embeddings of the
// prompts (text or image, weighted, with stop, optionally masked to a region); plus weighted regularisers.
// Prompts and options may be changed from another thread at any time; a call uses those current when it starts.
// Shapes: B images, H x W pixels, N = B * cutn cutouts, S a member's input size, E embedding width.
#pragma once

#include "clipnet/checkpoint.h"
#include "clipnet/clip_model.h"
#include "clipnet/config.h"
#include "clipnet/tokenizer.h"
#include "guidance/cutouts.h"
#include "guidance/hooks.h"
#include "guidance/loss.h"
#include "guidance/prompt.h"

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace clipguide::guidance {

// One CLIP model of the ensemble.
struct GuideMember {
  clipnet::ClipModel model{nullptr};            // frozen, in eval mode (load_clip gives that)
  clipnet::ClipConfig config;                   // its input size (vision.image_size) and mean/std
  std::optional<clipnet::Tokenizer> tokenizer;  // needed for text prompts
  double weight = 1.0;                          // factor of this member's loss in the total
  std::string name;                             // for reports; empty: config.name
};

// "path[:weight]" (the tools' --clip_model syntax) → {path, weight}; a trailing ":number" is the weight,
// anything else stays in the path (so "C:\\models\\x.pt" and URLs keep their colons).
std::pair<std::string, double> split_member_spec(const std::string& spec);

// load_clip(path) + Tokenizer::from_file(vocabulary) as a member. Errors name the path.
GuideMember load_member(const std::filesystem::path& clip_path, const std::filesystem::path& vocabulary,
                        double weight = 1.0, const clipnet::ClipLoadOptions& options = {});

// A text or image prompt.
struct GuidePrompt {
  enum class Kind { kText, kImage, kNoise };
  Kind kind = Kind::kText;                                 // what `text` / `image` / `noise_seed` hold
  std::string text;                                        // the text (kText) or image file path (kImage)
  at::Tensor image;                                        // kImage from memory: (3, H, W) or (1, 3, H, W) in [0, 1]
  uint64_t noise_seed = 0;                                 // kNoise: the embedding's seed
  double weight = 1.0;                                     // negative pushes away
  double stop = -std::numeric_limits<double>::infinity();  // sign-adjusted distance where the pull stops
  at::Tensor mask;                                         // optional region (H, W) / (1, 1, H, W) in [0, 1]
                                                           // the prompt acts on (see Guide::mask_prompt)

  static GuidePrompt from_text(std::string text, double weight = 1.0,
                               double stop = -std::numeric_limits<double>::infinity());
  static GuidePrompt from_image_file(std::filesystem::path path, double weight = 1.0,
                                     double stop = -std::numeric_limits<double>::infinity());
  static GuidePrompt from_image(at::Tensor image, double weight = 1.0,
                                double stop = -std::numeric_limits<double>::infinity());
  // VQGAN+CLIP's noise prompt: for each member, a (1, embed_dim) standard-normal embedding drawn from a CPU
  // generator seeded with `seed` (as torch.empty([1, E]).normal_(generator=torch.Generator().manual_seed(seed))).
  static GuidePrompt from_noise(uint64_t seed, double weight = 1.0);
  // From parse_prompt's result; image: the text is a file path.
  static GuidePrompt from_spec(const PromptSpec& spec, bool image = false);
  // "text" or the path, for reports ("<image>" for an in-memory image).
  std::string label() const;
};

// "a|b:2|c:1:-0.1" → text prompts (parse_prompts syntax).
std::vector<GuidePrompt> text_prompts(const std::string& specs);

struct GuideOptions {
  CutoutOptions cutouts;                   // cutn, cut_pow, method, overview, ... (guidance/cutouts.h)
  AugmentOptions augments;                 // augmentation probabilities (parse_augments("...") builds one)
  Distance distance = Distance::kSpherical;  // prompt distance: spherical (VQGAN+CLIP) or cosine
  double tv_weight = 0.0;                  // total-variation regulariser weight (smoothness)
  double symmetry_weight = 0.0;            // left-right symmetry regulariser weight
  double saturation_weight = 0.0;          // > 0 pulls towards grey, < 0 towards vivid colours
  double init_weight = 0.0;                // init-image loss weight, decayed by 1 / (2 step + 1)
  at::Tensor init_image;                   // (1 or B, 3, H', W') in [0, 1], resized to the image; needed if init_weight
  uint64_t seed = 0;                       // cutouts of step t come from (seed, t): reproducible, same for all members
  bool report = true;                      // fill GuideReport (one host sync per call); false for pure speed
  at::ScalarType autocast = at::kFloat;    // kBFloat16 / kHalf: each member's CLIP forward runs under autocast on its
                                           // device (fp32 weights and loss); kFloat: off
  bool cuda_graphs = false;                // CUDA members without prompt masks: encode_image forward and backward
                                           // replayed from CUDA graphs (graphed_encoder.h); a loss must then be
                                           // backpropagated before the next. Ignored on the CPU
  int64_t cutn_batches = 1;                // backward(): the step's cutouts in this many micro-batches, CLIP's
                                           // activations held for one at a time (Disco's name); same gradient
  // Several processes on one image (clip-guide under torchrun): this process scores part `shard` of `shards`
  // contiguous parts of each step's cutouts (the same cutouts one process draws), and only part 0 adds the
  // regularisers, so the losses, reports and gradients of all parts summed are the one-process ones.
  int64_t shard = 0;
  int64_t shards = 1;
};

// Per prompt: its weighted loss summed over members (member weights applied) and its mean cosine
// similarity to the cutouts (averaged over members, weighted by |member weight|).
struct PromptReport {
  std::string label;       // GuidePrompt::label()
  double weight = 1.0;     // prompt weight
  double loss = 0.0;       // sum over members of member weight * prompt_loss
  double similarity = 0.0; // mean cosine similarity, cutouts vs prompt embedding
  std::vector<double> member_loss;        // prompt_loss per member (before the member weight)
  std::vector<double> member_similarity;  // mean cosine similarity per member
};

struct MemberReport {
  std::string name;      // GuideMember::name
  double weight = 1.0;   // member weight
  double loss = 0.0;     // this member's summed prompt losses (before its weight)
};

struct GuideReport {
  int64_t step = 0;            // the step the loss was computed for
  double total = 0.0;          // the returned loss
  double prompt_loss = 0.0;    // prompt part of the total
  double tv = 0.0;             // weighted regulariser values included in the total
  double symmetry = 0.0;
  double saturation = 0.0;
  double init = 0.0;
  std::vector<PromptReport> prompts;
  std::vector<MemberReport> members;
};

class GraphedImageEncoder;

class Guide {
 public:
  // Throws clipguide::Error when there are no members or a member has no model.
  explicit Guide(std::vector<GuideMember> members, GuideOptions options = {});
  ~Guide();
  Guide(const Guide&) = delete;
  Guide& operator=(const Guide&) = delete;

  // (B, 3, H, W) in [0, 1] → scalar loss, differentiable w.r.t. the image. Uses step() and advances it.
  at::Tensor operator()(const at::Tensor& image);
  // Same for an explicit step (cutout seeds and the init-image decay depend on it). Fills `report` when
  // given, and last_report() when given or options().report. Does not change step().
  at::Tensor loss(const at::Tensor& image, int64_t step, GuideReport* report = nullptr);
  // loss(image, step, report) and its backward into `image`'s graph (to whatever made the image, e.g. a
  // generator's parameters), with the cutouts in options().cutn_batches micro-batches: CLIP's activations
  // are held for one micro-batch at a time, and the image's own graph is backpropagated once. The same
  // gradient as loss().backward() up to rounding. Returns the loss value (detached).
  at::Tensor backward(const at::Tensor& image, int64_t step, GuideReport* report = nullptr);

  // --- prompts: encoded here, once per member (text and file embeddings are cached by text / path) -----
  void set_prompts(std::vector<GuidePrompt> prompts);
  size_t add_prompt(GuidePrompt prompt);                   // returns its index
  void remove_prompt(size_t index);                        // Error when out of range
  void edit_prompt(size_t index, GuidePrompt prompt);      // re-encodes only if text/image changed
  void set_prompt_weight(size_t index, double weight, double stop = -std::numeric_limits<double>::infinity());
  // Restricts prompt `index` to a region: its loss is computed on masked_composite(image, mask), so its
  // gradient reaches only the masked pixels. An undefined mask removes the restriction. Bad masks: Error.
  void mask_prompt(size_t index, const at::Tensor& mask);
  std::vector<GuidePrompt> prompts() const;
  // (1, E) embedding of prompt `index` for member `member` (unnormalised CLIP features).
  at::Tensor prompt_embedding(size_t index, size_t member = 0) const;

  // --- settings -------------------------------------------------------------------------------------
  GuideOptions options() const;
  void set_options(GuideOptions options);  // used from the next call on
  HookSet& hooks() { return hooks_; }      // image hooks run inside loss(); parameter hooks are for the caller
  int64_t step() const;
  void set_step(int64_t step);
  GuideReport last_report() const;
  size_t member_count() const { return members_.size(); }
  const GuideMember& member(size_t i) const { return members_.at(i); }

 private:
  struct Entry;  // a prompt with its per-member embeddings
  struct Pass;   // one loss evaluation's prompts, groups, cutout plans and partial sums (guide.cpp)
  struct Regularisers {
    at::Tensor tv, symmetry, saturation, init, total;  // weighted; undefined when their weight is 0
  };
  Pass begin_pass(const at::Tensor& x, int64_t step);
  std::pair<int64_t, int64_t> shard_range(const Pass& pass) const;
  // Scores cutouts [begin, begin + count) of the pass's plans: the weighted prompt losses (a differentiable
  // scalar on `device`, undefined with no prompts), their detached parts added to the pass's sums.
  at::Tensor score_cutouts(Pass& pass, int64_t begin, int64_t count, const c10::Device& device);
  Regularisers regularisers(const at::Tensor& x, const GuideOptions& opt, int64_t step) const;
  void finish_report(const Pass& pass, const at::Tensor& total, const Regularisers& reg, int64_t step,
                     GuideReport* report);
  Entry encode(GuidePrompt prompt);
  std::vector<Entry> encode_all(std::vector<GuidePrompt> prompts);
  GraphedImageEncoder& graphed(size_t member, at::ScalarType autocast);  // made on first use

  std::vector<GuideMember> members_;
  HookSet hooks_;
  mutable std::mutex mutex_;  // guards everything below
  GuideOptions options_;
  std::vector<Entry> entries_;
  int64_t step_ = 0;
  GuideReport last_report_;
  std::mutex cache_mutex_;                          // guards cache_
  std::vector<std::map<std::string, at::Tensor>> cache_;  // per member: "t:text" / "f:path" → (1, E)
  std::mutex graphs_mutex_;                                // guards graphs_
  std::vector<std::unique_ptr<GraphedImageEncoder>> graphs_;  // per member, with options().cuda_graphs
};

}  // namespace clipguide::guidance
