// CLIP pretraining loop (see trainer.h).
// ref: mlfoundations/open_clip@v3.3.0 src/open_clip_train/main.py (param groups), scheduler.py (cosine_lr),
//      train.py (train_one_epoch: accumulation, logit-scale clamp, logging)
// Gradient accumulation is open_clip's: cache every micro-batch's features without gradients, then
// recompute one micro-batch at a time with gradients against the cached rest, so a step equals one batch
// of accum_freq x B (negatives from all micro-batches), at the cost of a second forward pass.
// Gradient checkpointing (--grad-checkpointing) is the model's (ClipModel::set_grad_checkpointing).
// Shapes: B per-rank batch, S image side, E embedding width, L context length.
#include "clipnet/train/trainer.h"

#include "clipnet/checkpoint.h"
#include "clipnet/train/bpe_trainer.h"
#include "clipnet/train/fused_adamw.h"
#include "clipnet/train/loader.h"
#include "clipnet/train/open_dataset.h"
#include "core/error.h"
#include "core/io/file_util.h"
#include "core/io/safetensors.h"

#include <ATen/autocast_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>
#include <torch/optim/adamw.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unistd.h>

namespace clipguide::train {
namespace fs = std::filesystem;

namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

clipnet::ClipConfig parse_model(const std::string& model) {
  if (!model.empty() && model.front() == '{') return clipnet::ClipConfig::from_json_text(model);
  if (fs::is_regular_file(model)) return clipnet::ClipConfig::from_file(model);
  return clipnet::ClipConfig::builtin(model);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  clipguide::io::AtomicFile file(path);
  file.write(text);
  file.commit();
}

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Deletes a folder tree file by file (std::filesystem::remove_all misbehaves in some LibTorch-linked binaries).
void remove_tree(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
  for (const auto& p : entries) {
    if (fs::is_directory(p, ec) && !fs::is_symlink(p, ec)) remove_tree(p);
    else fs::remove(p, ec);
  }
  fs::remove(dir, ec);
}

// Vocabulary files worth copying from a tokenizer path (file or folder).
std::vector<fs::path> vocab_files(const fs::path& vocab) {
  std::vector<fs::path> out;
  if (fs::is_directory(vocab)) {
    for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt"})
      if (fs::exists(vocab / name)) out.push_back(vocab / name);
    for (const auto& e : fs::directory_iterator(vocab))
      if (e.path().string().size() > 7 && e.path().string().substr(e.path().string().size() - 7) == ".txt.gz")
        out.push_back(e.path());
  } else if (vocab.filename() == "vocab.json" || vocab.filename() == "merges.txt") {
    out = {vocab.parent_path() / "vocab.json", vocab.parent_path() / "merges.txt"};
  } else {
    out = {vocab};
  }
  return out;
}

std::string step_folder_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

// Sets CPU bf16 autocast for its lifetime.
struct CpuAutocast {
  explicit CpuAutocast(bool on) : on_(on) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(at::kCPU);
    prev_dtype_ = at::autocast::get_autocast_dtype(at::kCPU);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~CpuAutocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, prev_enabled_);
    at::autocast::set_autocast_dtype(at::kCPU, prev_dtype_);
  }
  bool on_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

// Captions for BPE training: the first n of the dataset (streams: read without decoding images).
std::vector<std::string> sample_captions(const Dataset& dataset, int64_t n) {
  std::vector<std::string> out;
  if (const auto* world = dynamic_cast<const ShapesWorld*>(&dataset)) {
    for (int64_t i = 0; i < n; ++i) out.push_back(world->caption(i));
  } else if (dataset.indexable()) {
    const int64_t size = dataset.size() < 0 ? n : std::min(n, dataset.size());
    for (int64_t i = 0; i < size; ++i) out.push_back(dataset.get(i).caption);
  } else {
    for (int64_t s = 0; s < dataset.num_shards() && static_cast<int64_t>(out.size()) < n; ++s) {
      auto reader = dataset.open_shard(s);
      while (static_cast<int64_t>(out.size()) < n) {
        auto sample = reader->next();
        if (!sample) break;
        out.push_back(sample->caption);
      }
    }
  }
  return out;
}

void check_dataset_type(const std::string& type, const std::string& spec) {
  if (type == "auto") return;
  const bool shapes = spec.rfind("shapes", 0) == 0;
  const bool tar = contains(spec, ".tar") || contains(spec, ".tgz");
  const bool ok = (type == "shapes" && shapes) || (type == "webdataset" && tar) ||
                  (type == "folder" && fs::is_directory(spec)) ||
                  (type == "csv" && !shapes && !tar && fs::is_regular_file(spec));
  if (type != "shapes" && type != "webdataset" && type != "folder" && type != "csv")
    throw Error("dataset type '" + type + "' is not one of auto, csv, webdataset, folder, shapes");
  if (!ok) throw Error("train data '" + spec + "' is not a " + type + " dataset");
}

}  // namespace

ParamGroups split_param_groups(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters) {
  ParamGroups groups;
  for (const auto& [name, p] : named_parameters) {
    const bool exclude = p.dim() < 2 || contains(name, "bn") || contains(name, "ln") || contains(name, "bias") ||
                         contains(name, "logit_scale");
    (exclude ? groups.no_decay : groups.decay).push_back(name);
  }
  return groups;
}

double cosine_lr(double base_lr, int64_t warmup, int64_t total_steps, int64_t step) {
  if (step < warmup) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double e = static_cast<double>(step - warmup);
  const double es = static_cast<double>(std::max<int64_t>(total_steps - warmup, 1));
  return 0.5 * (1.0 + std::cos(M_PI * e / es)) * base_lr;
}

fs::path resolve_checkpoint(const std::string& resume, const fs::path& checkpoint_dir) {
  fs::path folder = resume;
  if (resume == "latest") {
    const fs::path pointer = checkpoint_dir / "latest";
    if (!fs::exists(pointer)) throw Error("--resume latest: no checkpoint yet (" + pointer.string() + " is missing)");
    std::string name = read_text(pointer);
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    folder = checkpoint_dir / name;
  }
  if (!fs::exists(folder / "state.json")) throw Error("not a checkpoint folder (no state.json): " + folder.string());
  return folder;
}

struct Trainer::Impl {
  std::shared_ptr<Dataset> dataset;
  std::unique_ptr<Loader> loader;
  std::unique_ptr<FusedAdamW> optimizer;
  std::vector<std::pair<std::string, at::Tensor>> params;  // named, in optimiser order (decay, then no-decay)
  std::ofstream log;
  double last_wait_s = 0;
  std::chrono::steady_clock::time_point last_report = std::chrono::steady_clock::now();
  int64_t samples_since_report = 0;
};

Trainer::Trainer(TrainOptions options, std::shared_ptr<Communicator> comm)
    : options_(std::move(options)), comm_(std::move(comm)), impl_(std::make_unique<Impl>()) {
  if (!comm_) comm_ = std::make_shared<SingleProcess>();
  if (options_.precision != "fp32" && options_.precision != "bf16")
    throw Error("precision '" + options_.precision + "' is not one of fp32, bf16");
  if (options_.batch_size < 1 || options_.accum_freq < 1) throw Error("batch size and accum-freq must be >= 1");
  check_dataset_type(options_.dataset_type, options_.train_data);

  fs::path resume_folder;
  if (!options_.resume.empty()) resume_folder = resolve_checkpoint(options_.resume, options_.checkpoint_dir);

  // --pretrained (ignored when resuming: the checkpoint has the weights): its config, vocabulary and weights.
  clipnet::LoadedClip start;
  if (!options_.pretrained.empty() && resume_folder.empty()) {
    start = clipnet::load_clip(options_.pretrained);
    if (options_.vocab.empty() && !fs::is_directory(options_.pretrained))
      throw Error("--pretrained '" + options_.pretrained + "' is a file: give its tokenizer with --vocab");
    if (options_.vocab.empty()) options_.vocab = options_.pretrained;
  }
  config_ = !resume_folder.empty() ? clipnet::ClipConfig::from_file(resume_folder / "config.json")
            : start.model          ? start.config
                                   : parse_model(options_.model);
  if (options_.image_size > 0) config_.vision.image_size = options_.image_size;

  OpenDatasetOptions dopts;
  dopts.csv.image_key = options_.csv_img_key;
  dopts.csv.caption_key = options_.csv_caption_key;
  dopts.csv.separator = options_.csv_separator;
  dopts.shapes.seed = options_.seed;
  dopts.shapes.image_size = config_.vision.image_size;
  dopts.shapes.group = options_.shapes_group;
  dopts.shapes.vary = parse_shapes_variations(options_.shapes_vary);
  dopts.shapes.shade_fraction = options_.shapes_shade;
  impl_->dataset = open_dataset(options_.train_data, dopts);

  // Tokenizer: the checkpoint's, the given one, or a BPE vocabulary trained on the captions.
  if (!resume_folder.empty()) {
    vocab_folder_ = resume_folder / "vocab";
  } else if (!options_.vocab.empty()) {
    vocab_folder_ = options_.vocab;
  } else {
    BpeTrainOptions bpe;
    bpe.vocab_size = options_.bpe_vocab_size;
    const BpeVocabulary vocab = train_bpe(sample_captions(*impl_->dataset, options_.bpe_captions), bpe);
    vocab_folder_ = options_.checkpoint_dir.empty()
                        ? fs::temp_directory_path() / ("clipguide-bpe-" + std::to_string(::getpid()))
                        : options_.checkpoint_dir / "vocab";
    if (comm_->rank() == 0 || options_.checkpoint_dir.empty()) write_bpe_vocabulary(vocab, vocab_folder_);
    comm_->barrier();
  }
  tokenizer_ = clipnet::Tokenizer::from_file(vocab_folder_);
  if (start.model && tokenizer_->vocab_size() != config_.text.vocab_size) {
    throw Error("--pretrained '" + options_.pretrained + "' has a vocabulary of " +
                std::to_string(config_.text.vocab_size) + " tokens but its tokenizer '" + vocab_folder_.string() +
                "' has " + std::to_string(tokenizer_->vocab_size()));
  }
  config_.text.vocab_size = tokenizer_->vocab_size();
  config_.validate();

  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(options_.seed);
  }
  model_ = clipnet::ClipModel(config_);
  if (start.model) {  // same config, so the same names and shapes (load_state_dict checks both)
    clipguide::TensorMap weights;
    for (const auto& item : start.model->named_parameters(true)) weights[item.key()] = item.value();
    for (const auto& item : start.model->named_buffers(true)) weights[item.key()] = item.value();
    clipguide::load_state_dict(*model_, weights);
  }
  model_->set_grad_checkpointing(options_.grad_checkpointing);
  if (options_.loss.siglip) {
    c10::NoGradGuard no_grad;
    model_->logit_scale.fill_(std::log(10.0));  // open_clip's SigLIP init: scale 10, bias -10
  }
  logit_bias_ = at::full({}, options_.loss.siglip ? -10.0 : 0.0).requires_grad_(options_.loss.siglip);

  // Same initial weights on every rank (they are seeded alike; the broadcast makes it certain).
  for (auto& p : model_->parameters()) {
    at::Tensor data = p.detach();
    comm_->broadcast_(data, 0);
  }

  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : model_->named_parameters(true)) named.emplace_back(item.key(), item.value());
  if (options_.loss.siglip) named.emplace_back("logit_bias", logit_bias_);
  const ParamGroups groups = split_param_groups(named);
  std::map<std::string, at::Tensor> by_name(named.begin(), named.end());
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& n : groups.decay) decay.push_back(by_name[n]), impl_->params.emplace_back(n, by_name[n]);
  for (const auto& n : groups.no_decay) no_decay.push_back(by_name[n]), impl_->params.emplace_back(n, by_name[n]);
  auto adamw = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(options_.lr)
        .betas({options_.beta1, options_.beta2}).eps(options_.eps).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  param_groups.emplace_back(decay, adamw(options_.wd));
  param_groups.emplace_back(no_decay, adamw(0.0));
  impl_->optimizer = std::make_unique<FusedAdamW>(param_groups, torch::optim::AdamWOptions(options_.lr));

  if (!resume_folder.empty()) load_checkpoint(resume_folder);
  make_loader();

  // Steps per epoch and in all.
  const int64_t per_step = options_.batch_size * options_.accum_freq * comm_->world_size();
  if (impl_->loader->batches_per_epoch() > 0)
    steps_per_epoch_ = impl_->loader->batches_per_epoch() / options_.accum_freq;
  else if (options_.train_num_samples > 0)
    steps_per_epoch_ = options_.train_num_samples / per_step;
  if (options_.steps > 0) {
    total_steps_ = options_.steps;
  } else {
    if (steps_per_epoch_ <= 0)
      throw Error("cannot tell the epoch length of '" + options_.train_data +
                  "': give --steps or --train-num-samples");
    total_steps_ = options_.epochs * steps_per_epoch_;
  }

  if (comm_->rank() == 0 && !options_.log_file.empty()) {
    if (options_.log_file.has_parent_path()) fs::create_directories(options_.log_file.parent_path());
    // A run killed in the middle of a line left it unfinished: end it, so the next record stays one line.
    std::error_code ec;
    bool unfinished = false;
    if (fs::file_size(options_.log_file, ec) > 0 && !ec) {
      std::ifstream tail(options_.log_file, std::ios::binary | std::ios::ate);
      tail.seekg(-1, std::ios::end);
      unfinished = tail.get() != '\n';
    }
    impl_->log.open(options_.log_file, std::ios::app);
    if (!impl_->log) throw Error("cannot open log file " + options_.log_file.string());
    if (unfinished) impl_->log << "\n" << std::flush;
  }
}

Trainer::~Trainer() = default;

void Trainer::make_loader() {
  LoaderOptions lo;
  lo.batch_size = options_.batch_size;
  lo.image_size = config_.vision.image_size;
  lo.num_workers = options_.workers;
  lo.seed = options_.seed;
  lo.rank = comm_->rank();
  lo.world_size = comm_->world_size();
  lo.start_epoch = state_.epoch;
  // Resuming inside an epoch: the loader's order is a pure function of its options, so starting it at the
  // consumed batch count reproduces the uninterrupted stream; the skipped batches are not decoded.
  lo.start_batch = state_.batch_in_epoch;
  for (int c = 0; c < 3 && c < static_cast<int>(config_.preprocess.mean.size()); ++c) {
    lo.mean[c] = config_.preprocess.mean[c];
    lo.std[c] = config_.preprocess.std[c];
  }
  if (!impl_->dataset->indexable() && options_.train_num_samples > 0)
    lo.stream_epoch_batches = options_.train_num_samples / (options_.batch_size * comm_->world_size());
  impl_->loader = std::make_unique<Loader>(impl_->dataset, lo);
  impl_->last_wait_s = impl_->loader->stats().wait_s;
}

double Trainer::step() {
  std::vector<at::Tensor> images, tokens;  // (B, 3, S, S), (B, L) each
  for (int64_t m = 0; m < options_.accum_freq; ++m) {
    std::optional<Batch> batch = impl_->loader->next();
    while (!batch) {  // end of an epoch
      ++state_.epoch;
      state_.batch_in_epoch = 0;
      batch = impl_->loader->next();
    }
    ++state_.batch_in_epoch;
    tokens.push_back(tokenizer_->tokenize(batch->captions, config_.text.context_length, true));
    images.push_back(std::move(batch->images));
  }
  return train_step(images, tokens);
}

double Trainer::train_step(const std::vector<at::Tensor>& images, const std::vector<at::Tensor>& tokens) {
  if (images.size() != static_cast<size_t>(options_.accum_freq) || tokens.size() != images.size())
    throw Error("train_step: expected " + std::to_string(options_.accum_freq) + " micro-batches of images and tokens, got " +
                std::to_string(images.size()) + " and " + std::to_string(tokens.size()));
  model_->train();
  impl_->optimizer->zero_grad();
  const bool bf16 = options_.precision == "bf16";
  // Unit image and text features (B, E) of one micro-batch, in fp32.
  auto features = [&](const at::Tensor& pixels, const at::Tensor& ids) {
    at::Tensor image, text;
    {
      CpuAutocast autocast(bf16);
      image = model_->encode_image(pixels);  // (B, E)
      text = model_->encode_text(ids);       // (B, E)
    }
    image = image.to(at::kFloat), text = text.to(at::kFloat);
    return std::pair{image / image.norm(2, {-1}, true), text / text.norm(2, {-1}, true)};
  };
  for (const auto& im : images) impl_->samples_since_report += im.size(0) * comm_->world_size();
  double total = 0;
  if (options_.accum_freq == 1) {
    auto [image, text] = features(images[0], tokens[0]);
    at::Tensor loss = contrastive_loss(image, text, model_->logit_scale.exp(), logit_bias_, *comm_, options_.loss);
    loss.backward();
    total = loss.item<double>();
  } else {
    // open_clip's accumulation: features of every micro-batch without gradients, then per micro-batch its
    // features again with gradients among the others' cached ones, and the loss of the whole accumulated
    // batch back-propagated; the summed gradients are those of one batch of accum_freq x B.
    std::vector<at::Tensor> cached_image, cached_text;  // (B, E) each
    {
      c10::NoGradGuard no_grad;
      for (size_t m = 0; m < images.size(); ++m) {
        auto [image, text] = features(images[m], tokens[m]);
        cached_image.push_back(image), cached_text.push_back(text);
      }
    }
    for (size_t m = 0; m < images.size(); ++m) {
      auto [image, text] = features(images[m], tokens[m]);
      std::vector<at::Tensor> all_images = cached_image, all_texts = cached_text;
      all_images[m] = image, all_texts[m] = text;
      at::Tensor loss = contrastive_loss(at::cat(all_images), at::cat(all_texts), model_->logit_scale.exp(), logit_bias_,
                                         *comm_, options_.loss);  // over (accum_freq * B, E)
      loss.backward();
      total = loss.item<double>();
    }
  }
  if (comm_->world_size() > 1) {  // local losses differ per rank: report their mean (every rank sees the same)
    at::Tensor t = at::tensor({total}, at::kDouble);
    comm_->all_reduce_sum_(t);
    total = t.item<double>() / static_cast<double>(comm_->world_size());
  }
  if (!std::isfinite(total)) {  // on every rank at once (the mean): no rank waits for the others' gradients
    throw Error("step " + std::to_string(state_.step + 1) + ": the training loss is " +
                (std::isnan(total) ? "NaN" : "infinite") +
                "; stopped before the optimiser step (the weights are those of step " + std::to_string(state_.step) +
                "; lower --lr, or --resume from the last checkpoint)");
  }
  std::vector<at::Tensor> params;
  for (const auto& [n, p] : impl_->params) params.push_back(p);
  average_gradients(*comm_, params);
  const double lr = cosine_lr(options_.lr, options_.warmup, total_steps_, state_.step);
  for (auto& group : impl_->optimizer->param_groups()) group.options().set_lr(lr);
  impl_->optimizer->step();
  clamp_logit_scale_(model_->logit_scale);
  ++state_.step;
  return total;
}

std::vector<double> Trainer::run(const std::function<void(const StepReport&)>& on_report,
                                 const std::function<void(const EvalReport&)>& on_eval) {
  std::vector<double> losses;
  auto eval_and_log = [&] {
    EvalReport r = evaluate();
    if (impl_->log.is_open()) {
      nlohmann::json j = {{"step", r.step}, {"zero_shot", r.zero_shot}, {"swap", r.swap}, {"recall@1", r.recall_at_1},
                          {"recall@5", r.recall_at_5}};
      if (r.linear_probe >= 0) j["linear_probe"] = r.linear_probe;
      impl_->log << j.dump() << "\n" << std::flush;
    }
    if (on_eval) on_eval(r);
  };
  while (state_.step < total_steps_) {
    const double loss = step();
    losses.push_back(loss);
    if (state_.step % std::max<int64_t>(options_.log_every_steps, 1) == 0 || state_.step == total_steps_) {
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - impl_->last_report).count();
      StepReport r;
      r.step = state_.step;
      r.total_steps = total_steps_;
      r.epoch = steps_per_epoch_ > 0 ? (state_.step - 1) / steps_per_epoch_ : state_.epoch;
      r.loss = loss;
      r.lr = impl_->optimizer->param_groups()[0].options().get_lr();
      r.logit_scale = std::exp(model_->logit_scale.item<double>());
      r.samples_per_s = dt > 0 ? static_cast<double>(impl_->samples_since_report) / dt : 0;
      const double wait = impl_->loader->stats().wait_s;
      r.data_wait_s = wait - impl_->last_wait_s;
      impl_->last_wait_s = wait;
      impl_->last_report = now;
      impl_->samples_since_report = 0;
      if (impl_->log.is_open()) {
        impl_->log << nlohmann::json({{"step", r.step}, {"epoch", r.epoch}, {"loss", r.loss}, {"lr", r.lr},
                                      {"logit_scale", r.logit_scale}, {"samples_per_s", r.samples_per_s},
                                      {"data_wait_s", r.data_wait_s}})
                          .dump()
                   << "\n" << std::flush;
      }
      if (on_report) on_report(r);
    }
    const bool epoch_end = steps_per_epoch_ > 0 && state_.step % steps_per_epoch_ == 0;
    const bool save = !options_.checkpoint_dir.empty() &&
                      ((options_.save_every_steps > 0 && state_.step % options_.save_every_steps == 0) ||
                       (options_.save_frequency > 0 && epoch_end &&
                        (state_.step / steps_per_epoch_) % options_.save_frequency == 0) ||
                       state_.step == total_steps_);
    if (save) save_checkpoint();
    if (options_.zeroshot_every_steps > 0 && comm_->rank() == 0 &&
        (state_.step % options_.zeroshot_every_steps == 0 || state_.step == total_steps_))
      eval_and_log();
  }
  if (options_.linear_probe && comm_->rank() == 0) {
    ShapesEvalOptions e;
    e.seed = options_.seed;
    e.image_size = config_.vision.image_size;
    for (int c = 0; c < 3; ++c) e.mean[c] = config_.preprocess.mean[c], e.std[c] = config_.preprocess.std[c];
    EvalReport r;
    r.step = state_.step;
    r.linear_probe = shapes_linear_probe(model_, e);
    if (impl_->log.is_open())
      impl_->log << nlohmann::json({{"step", r.step}, {"linear_probe", r.linear_probe}}).dump() << "\n" << std::flush;
    if (on_eval) on_eval(r);
  }
  return losses;
}

EvalReport Trainer::evaluate() {
  ShapesEvalOptions e;
  e.seed = options_.seed;
  e.image_size = config_.vision.image_size;
  e.samples = options_.zeroshot_samples;
  e.retrieval_k = options_.retrieval_k;
  e.context_length = config_.text.context_length;
  for (int c = 0; c < 3; ++c) e.mean[c] = config_.preprocess.mean[c], e.std[c] = config_.preprocess.std[c];
  EvalReport r = evaluate_shapes_world(model_, *tokenizer_, e);
  r.step = state_.step;
  model_->train();
  return r;
}

fs::path Trainer::save_checkpoint(const std::function<void(const std::string&)>& after_file) {
  if (options_.checkpoint_dir.empty()) throw Error("no checkpoint folder set");
  const fs::path dir = options_.checkpoint_dir;
  const std::string name = step_folder_name(state_.step);
  const fs::path folder = dir / name;
  if (comm_->rank() != 0) return folder;
  fs::create_directories(dir);
  // Temporaries left by a run killed mid-write are incomplete by construction: drop them (step folders, and
  // the AtomicFile temporary of the `latest` pointer).
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if ((f.rfind(".step_", 0) == 0 || f.rfind("latest.tmp-", 0) == 0) && f.find(".tmp-") != std::string::npos) {
      remove_tree(e.path());
    }
  }
  const fs::path tmp = dir / ("." + name + ".tmp-" + std::to_string(::getpid()));
  fs::create_directories(tmp / "vocab");
  auto written = [&](const std::string& file) {
    if (after_file) after_file(file);
  };

  clipguide::TensorMap weights, optim;
  for (const auto& item : model_->named_parameters(true)) weights[item.key()] = item.value().detach();
  for (const auto& item : model_->named_buffers(true)) weights[item.key()] = item.value().detach();
  if (options_.loss.siglip) weights["logit_bias"] = logit_bias_.detach();
  clipguide::write_safetensors(tmp / "model.safetensors", weights);
  written("model.safetensors");

  auto& states = impl_->optimizer->state();
  for (const auto& [n, p] : impl_->params) {
    auto it = states.find(p.unsafeGetTensorImpl());
    if (it == states.end()) continue;
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    optim["exp_avg/" + n] = s.exp_avg();
    optim["exp_avg_sq/" + n] = s.exp_avg_sq();
    optim["step/" + n] = at::tensor({s.step()}, at::kLong);
  }
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    optim["rng/cpu"] = at::Tensor(gen.get_state());
  }
  clipguide::write_safetensors(tmp / "optimizer.safetensors", optim);
  written("optimizer.safetensors");

  write_text_atomic(tmp / "config.json", config_.to_json_text());
  written("config.json");
  for (const auto& f : vocab_files(vocab_folder_)) {
    fs::copy_file(f, tmp / "vocab" / f.filename(), fs::copy_options::overwrite_existing);
    written("vocab/" + f.filename().string());
  }
  nlohmann::json state = {{"step", state_.step},
                          {"epoch", state_.epoch},
                          {"batch_in_epoch", state_.batch_in_epoch},
                          {"world_size", comm_->world_size()},
                          {"batch_size", options_.batch_size},
                          {"accum_freq", options_.accum_freq},
                          {"seed", options_.seed},
                          {"train_data", options_.train_data},
                          {"total_steps", total_steps_}};
  write_text_atomic(tmp / "state.json", state.dump(2));  // last: a folder with state.json is complete
  written("state.json");
  fsync_dir(tmp);

  if (fs::exists(folder)) remove_tree(folder);  // the same step saved again (e.g. epoch end and step N)
  fs::rename(tmp, folder);
  fsync_dir(dir);
  write_text_atomic(dir / "latest", name + "\n");
  fsync_dir(dir);
  return folder;
}

void Trainer::load_checkpoint(const fs::path& folder) {
  const fs::path state_file = folder / "state.json";
  int64_t world_size = 1, batch_size = options_.batch_size;
  try {
    const nlohmann::json state = nlohmann::json::parse(read_text(state_file));
    state_.step = state.at("step").get<int64_t>();
    state_.epoch = state.at("epoch").get<int64_t>();
    state_.batch_in_epoch = state.at("batch_in_epoch").get<int64_t>();
    world_size = state.value("world_size", world_size);
    batch_size = state.value("batch_size", batch_size);
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint state " + state_file.string() +
                ": expected JSON with integer step, epoch and batch_in_epoch (" + e.what() + ")");
  }
  if (state_.step < 0 || state_.epoch < 0 || state_.batch_in_epoch < 0)
    throw Error("checkpoint state " + state_file.string() + ": step, epoch and batch_in_epoch must be >= 0");
  if (world_size != comm_->world_size() || batch_size != options_.batch_size)
    throw Error("checkpoint " + folder.string() + " was written with world size " + std::to_string(world_size) +
                " and batch size " + std::to_string(batch_size) + "; exact resume needs the same");

  const fs::path weights_file = folder / "model.safetensors";
  clipguide::TensorMap weights = clipguide::read_safetensors(weights_file).tensors;
  try {
    if (auto it = weights.find("logit_bias"); it != weights.end()) {
      if (it->second.numel() != 1) throw Error("logit_bias: expected one value, got " + shape_str(it->second.sizes()));
      c10::NoGradGuard no_grad;
      logit_bias_.copy_(it->second.reshape({}));
      weights.erase(it);
    }
    clipguide::load_state_dict(*model_, weights, true);
  } catch (const Error& e) {
    throw Error("checkpoint weights " + weights_file.string() + ": " + e.what());
  }

  const fs::path optim_file = folder / "optimizer.safetensors";
  const clipguide::TensorMap optim = clipguide::read_safetensors(optim_file).tensors;
  auto entry = [&](const std::string& key, const at::Tensor& like) {
    auto it = optim.find(key);
    if (it == optim.end()) throw Error("optimiser state " + optim_file.string() + ": no tensor '" + key + "'");
    if (like.defined() && it->second.sizes() != like.sizes())
      throw Error("optimiser state " + optim_file.string() + ": '" + key + "' has shape " +
                  shape_str(it->second.sizes()) + ", expected " + shape_str(like.sizes()));
    if (!like.defined() && it->second.numel() != 1)
      throw Error("optimiser state " + optim_file.string() + ": '" + key + "' should hold one value");
    return it->second;
  };
  auto& states = impl_->optimizer->state();
  for (const auto& [n, p] : impl_->params) {
    if (optim.find("exp_avg/" + n) == optim.end()) continue;  // never stepped (no gradient yet)
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(entry("step/" + n, {}).item<int64_t>());
    s->exp_avg(entry("exp_avg/" + n, p).to(p.dtype()).clone());
    s->exp_avg_sq(entry("exp_avg_sq/" + n, p).to(p.dtype()).clone());
    states[p.unsafeGetTensorImpl()] = std::move(s);
  }
  if (auto it = optim.find("rng/cpu"); it != optim.end()) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    try {
      gen.set_state(it->second.contiguous());
    } catch (const c10::Error& e) {
      throw Error("optimiser state " + optim_file.string() + ": 'rng/cpu' is not a CPU generator state (" +
                  error_text(e) + ")");
    }
  }
}

}  // namespace clipguide::train
