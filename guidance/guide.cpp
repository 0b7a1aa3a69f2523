// Guide (see guide.h): prompt encoding with a per-member cache, and one loss evaluation as named steps:
// begin_pass (options and prompts as they are, prompts grouped by mask, one cutout plan per member
// resolution), score_cutouts (per group and member: a slice of the cutouts, normalise + encode_image, per
// prompt prompt_loss, weighted sums), regularisers, and finish_report (read back in one host transfer).
// backward() runs score_cutouts once per cutout micro-batch.
// Shapes: B images, H x W pixels, N = B * cutn cutouts, S a member's input size, E embedding width.
#include "guidance/guide.h"

#include "clipnet/preprocess.h"
#include "core/autocast.h"
#include "core/error.h"
#include "guidance/graphed_encoder.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <cstdlib>
#include <utility>

namespace clipguide::guidance {

struct Guide::Entry {
  GuidePrompt prompt;
  std::vector<at::Tensor> embeddings;  // per member, (1, E) float on the member's device
};

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

c10::Device model_device(const clipnet::ClipModel& model) { return model->text_projection.device(); }

at::Tensor unit(const at::Tensor& x) { return x / at::linalg_vector_norm(x, 2, {-1}, /*keepdim=*/true); }

std::string member_name(const GuideMember& m, size_t i) {
  if (!m.name.empty()) return m.name;
  if (!m.config.name.empty()) return m.config.name;
  return "member " + std::to_string(i);
}

void check_image(const at::Tensor& image) {
  if (!image.defined() || image.dim() != 4 || image.size(1) != 3) {
    throw Error("Guide: expected a (B, 3, H, W) image in [0, 1], got " +
                (image.defined() ? shape_str(image.sizes()) : std::string("an undefined tensor")));
  }
}

}  // namespace

// --- members and prompts ----------------------------------------------------------------------------

std::pair<std::string, double> split_member_spec(const std::string& spec) {
  auto colon = spec.rfind(':');
  if (colon != std::string::npos) {
    std::string tail = spec.substr(colon + 1);
    char* end = nullptr;
    double weight = std::strtod(tail.c_str(), &end);
    if (!tail.empty() && *end == '\0') return {spec.substr(0, colon), weight};
  }
  return {spec, 1.0};
}

GuideMember load_member(const std::filesystem::path& clip_path, const std::filesystem::path& vocabulary,
                        double weight, const clipnet::ClipLoadOptions& options) {
  auto loaded = clipnet::load_clip(clip_path, options);
  GuideMember m;
  m.model = loaded.model;
  m.config = loaded.config;
  m.tokenizer = clipnet::Tokenizer::from_file(vocabulary);
  clipnet::check_vocabulary_fits(m.tokenizer->vocab_size(), m.config, vocabulary.string(), clip_path.string());
  m.weight = weight;
  m.name = clip_path.filename().string();
  return m;
}

GuidePrompt GuidePrompt::from_text(std::string text, double weight, double stop) {
  GuidePrompt p;
  p.text = std::move(text);
  p.weight = weight;
  p.stop = stop;
  return p;
}

GuidePrompt GuidePrompt::from_image_file(std::filesystem::path path, double weight, double stop) {
  GuidePrompt p = from_text(path.string(), weight, stop);
  p.kind = Kind::kImage;
  return p;
}

GuidePrompt GuidePrompt::from_image(at::Tensor image, double weight, double stop) {
  GuidePrompt p = from_text("", weight, stop);
  p.kind = Kind::kImage;
  p.image = std::move(image);
  return p;
}

GuidePrompt GuidePrompt::from_noise(uint64_t seed, double weight) {
  GuidePrompt p = from_text("noise:" + std::to_string(seed), weight);
  p.kind = Kind::kNoise;
  p.noise_seed = seed;
  return p;
}

GuidePrompt GuidePrompt::from_spec(const PromptSpec& spec, bool image) {
  return image ? from_image_file(spec.text, spec.weight, spec.stop) : from_text(spec.text, spec.weight, spec.stop);
}

std::string GuidePrompt::label() const {
  if (kind == Kind::kImage && image.defined()) return "<image>";
  return text;
}

std::vector<GuidePrompt> text_prompts(const std::string& specs) {
  std::vector<GuidePrompt> out;
  for (const auto& spec : parse_prompts(specs)) out.push_back(GuidePrompt::from_spec(spec));
  return out;
}

Guide::Guide(std::vector<GuideMember> members, GuideOptions options)
    : members_(std::move(members)), options_(std::move(options)) {
  if (members_.empty()) throw Error("Guide: needs at least one CLIP member");
  for (size_t i = 0; i < members_.size(); ++i) {
    if (!members_[i].model) throw Error("Guide: member " + std::to_string(i) + " has no model");
    if (!std::isfinite(members_[i].weight)) throw Error("Guide: member " + std::to_string(i) + " weight is not finite");
    members_[i].name = member_name(members_[i], i);
  }
  cache_.resize(members_.size());
}

Guide::~Guide() = default;

Guide::Entry Guide::encode(GuidePrompt prompt) {
  const std::string what = "Guide prompt '" + prompt.label() + "'";
  if (!std::isfinite(prompt.weight)) throw Error(what + ": weight is not finite");
  if (prompt.mask.defined()) check_mask(prompt.mask, what);
  std::string key;
  if (prompt.kind == GuidePrompt::Kind::kText) {
    if (prompt.text.empty()) throw Error("Guide: empty text prompt");
    key = "t:" + prompt.text;
  } else if (prompt.kind == GuidePrompt::Kind::kNoise) {
    key = "n:" + std::to_string(prompt.noise_seed);
  } else if (prompt.image.defined()) {
    const auto& im = prompt.image;
    if (!((im.dim() == 3 && im.size(0) == 3) || (im.dim() == 4 && im.size(0) == 1 && im.size(1) == 3))) {
      throw Error(what + ": an image prompt tensor must be (3, H, W) or (1, 3, H, W); got " + shape_str(im.sizes()));
    }
  } else {
    if (prompt.text.empty()) throw Error("Guide: image prompt with neither a path nor a tensor");
    key = "f:" + prompt.text;
  }
  Entry entry;
  at::NoGradGuard no_grad;
  for (size_t m = 0; m < members_.size(); ++m) {
    auto& member = members_[m];
    if (!key.empty()) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_[m].find(key);
      if (it != cache_[m].end()) {
        entry.embeddings.push_back(it->second);
        continue;
      }
    }
    const auto device = model_device(member.model);
    const int64_t size = member.config.vision.image_size;
    const auto& pre = member.config.preprocess;
    at::Tensor features;  // (1, E)
    if (prompt.kind == GuidePrompt::Kind::kText) {
      if (!member.tokenizer) throw Error(what + ": member '" + member.name + "' has no tokenizer");
      at::Tensor tokens = member.tokenizer->tokenize({prompt.text}, member.config.text.context_length,
                                                     /*truncate=*/true);  // (1, L)
      features = member.model->encode_text(tokens.to(device));
    } else if (prompt.kind == GuidePrompt::Kind::kNoise) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(prompt.noise_seed);
      features = at::empty({1, member.config.embed_dim}, at::kFloat).normal_(0.0, 1.0, gen);
    } else if (prompt.image.defined()) {
      at::Tensor im = prompt.image.dim() == 3 ? prompt.image.unsqueeze(0) : prompt.image;  // (1, 3, H, W)
      im = im.detach().to(device, at::kFloat);
      features = member.model->encode_image(clipnet::preprocess_tensor(im, size, pre.mean, pre.std));
    } else {
      at::Tensor pixels = clipnet::preprocess_file(prompt.text, size, pre.mean, pre.std);  // (3, S, S)
      features = member.model->encode_image(pixels.unsqueeze(0).to(device));
    }
    features = features.detach().to(at::kFloat);  // (1, E)
    if (!key.empty()) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      cache_[m][key] = features;
    }
    entry.embeddings.push_back(features);
  }
  entry.prompt = std::move(prompt);
  return entry;
}

std::vector<Guide::Entry> Guide::encode_all(std::vector<GuidePrompt> prompts) {
  std::vector<Entry> out;
  for (auto& p : prompts) out.push_back(encode(std::move(p)));
  return out;
}

void Guide::set_prompts(std::vector<GuidePrompt> prompts) {
  auto entries = encode_all(std::move(prompts));  // outside the lock: a running step is not held up
  std::lock_guard<std::mutex> lock(mutex_);
  entries_ = std::move(entries);
}

size_t Guide::add_prompt(GuidePrompt prompt) {
  auto entry = encode(std::move(prompt));
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.push_back(std::move(entry));
  return entries_.size() - 1;
}

namespace {
void check_index(size_t index, size_t count, const char* what) {
  if (index >= count) {
    throw Error(std::string("Guide::") + what + ": prompt index " + std::to_string(index) + " out of range (" +
                std::to_string(count) + " prompts)");
  }
}
}  // namespace

void Guide::remove_prompt(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_index(index, entries_.size(), "remove_prompt");
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(index));
}

void Guide::edit_prompt(size_t index, GuidePrompt prompt) {
  std::optional<Entry> reuse;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    check_index(index, entries_.size(), "edit_prompt");
    const auto& old = entries_[index].prompt;
    if (old.kind == prompt.kind && old.text == prompt.text &&
        old.image.unsafeGetTensorImpl() == prompt.image.unsafeGetTensorImpl()) {
      reuse = entries_[index];
    }
  }
  Entry entry;
  if (reuse) {
    if (!std::isfinite(prompt.weight)) throw Error("Guide::edit_prompt: weight is not finite");
    if (prompt.mask.defined()) check_mask(prompt.mask, "Guide::edit_prompt");
    entry.embeddings = reuse->embeddings;
    entry.prompt = std::move(prompt);
  } else {
    entry = encode(std::move(prompt));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  check_index(index, entries_.size(), "edit_prompt");
  entries_[index] = std::move(entry);
}

void Guide::set_prompt_weight(size_t index, double weight, double stop) {
  if (!std::isfinite(weight)) throw Error("Guide::set_prompt_weight: weight is not finite");
  std::lock_guard<std::mutex> lock(mutex_);
  check_index(index, entries_.size(), "set_prompt_weight");
  entries_[index].prompt.weight = weight;
  entries_[index].prompt.stop = stop;
}

void Guide::mask_prompt(size_t index, const at::Tensor& mask) {
  if (mask.defined()) check_mask(mask, "Guide::mask_prompt(" + std::to_string(index) + ")");
  std::lock_guard<std::mutex> lock(mutex_);
  check_index(index, entries_.size(), "mask_prompt");
  entries_[index].prompt.mask = mask.defined() ? mask.detach().clone() : at::Tensor();
}

std::vector<GuidePrompt> Guide::prompts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<GuidePrompt> out;
  for (const auto& e : entries_) out.push_back(e.prompt);
  return out;
}

at::Tensor Guide::prompt_embedding(size_t index, size_t member) const {
  std::lock_guard<std::mutex> lock(mutex_);
  check_index(index, entries_.size(), "prompt_embedding");
  return entries_[index].embeddings.at(member);
}

GuideOptions Guide::options() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return options_;
}

void Guide::set_options(GuideOptions options) {
  std::lock_guard<std::mutex> lock(mutex_);
  options_ = std::move(options);
}

int64_t Guide::step() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return step_;
}

void Guide::set_step(int64_t step) {
  std::lock_guard<std::mutex> lock(mutex_);
  step_ = step;
}

GuideReport Guide::last_report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_report_;
}

GraphedImageEncoder& Guide::graphed(size_t member, at::ScalarType autocast) {
  std::lock_guard<std::mutex> lock(graphs_mutex_);
  graphs_.resize(members_.size());
  auto& g = graphs_[member];
  if (!g || g->autocast() != autocast) g = std::make_unique<GraphedImageEncoder>(members_[member].model, autocast);
  return *g;
}

// --- the loss ---------------------------------------------------------------------------------------

at::Tensor Guide::operator()(const at::Tensor& image) {
  int64_t step = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    step = step_++;
  }
  return loss(image, step);
}

// What one call scores: the prompts grouped by mask (prompts sharing a mask tensor, or none, share a
// composite image and its cutouts), and per member x prompt the loss and similarity summed over the cutouts
// seen so far (each scaled by its share of the step's cutouts, so micro-batches add up to the whole).
struct Guide::Pass {
  struct Group {
    at::Tensor mask;              // (1, 1, H, W) resized, or undefined: the image itself
    std::vector<size_t> prompts;  // entry indices
  };
  at::Tensor image;  // (B, 3, H, W) what the cutouts are cut from (composited per group and micro-batch, so
                     // that each micro-batch's backward has its own graph)
  GuideOptions opt;
  std::vector<Entry> entries;
  std::vector<Group> groups;
  std::map<int64_t, CutoutPlan> plans;  // per member input size S: the step's cutouts, the same for every group
  std::vector<at::Tensor> loss;         // [m * P + p] scalar, detached, summed over micro-batches
  std::vector<at::Tensor> similarity;   // [m * P + p] scalar, detached
  at::Tensor prompt_total;              // detached sum over micro-batches of the weighted prompt losses
};

Guide::Pass Guide::begin_pass(const at::Tensor& x, int64_t step) {
  Pass pass;
  pass.image = x;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pass.opt = options_;
    pass.entries = entries_;
  }
  if (pass.opt.cutn_batches < 1) throw Error("Guide: cutn_batches must be >= 1, got " + std::to_string(pass.opt.cutn_batches));
  if (pass.opt.shards < 1 || pass.opt.shard < 0 || pass.opt.shard >= pass.opt.shards) {
    throw Error("Guide: shard " + std::to_string(pass.opt.shard) + " of " + std::to_string(pass.opt.shards) +
                ": expected 0 <= shard < shards");
  }
  const int64_t height = x.size(2), width = x.size(3);
  std::map<const void*, size_t> group_of_mask;
  for (size_t p = 0; p < pass.entries.size(); ++p) {
    const at::Tensor& mask = pass.entries[p].prompt.mask;
    const void* key = mask.defined() ? static_cast<const void*>(mask.unsafeGetTensorImpl()) : nullptr;
    auto it = group_of_mask.find(key);
    if (it == group_of_mask.end()) {
      Pass::Group g;
      if (mask.defined()) g.mask = detail::resize_mask_unchecked(mask, height, width, x.options());
      pass.groups.push_back(std::move(g));
      it = group_of_mask.emplace(key, pass.groups.size() - 1).first;
    }
    pass.groups[it->second].prompts.push_back(p);
  }
  // Every member size: the same seed, so the same crops and augmentations at every resolution.
  const uint64_t step_seed = splitmix64(pass.opt.seed ^ splitmix64(static_cast<uint64_t>(step)));
  Cutouts cutouts(pass.opt.cutouts, pass.opt.augments, step_seed);
  for (const auto& member : members_) {
    const int64_t size = member.config.vision.image_size;
    if (pass.plans.count(size)) continue;
    cutouts.reseed(step_seed);
    pass.plans.emplace(size, cutouts.plan(x, size));
  }
  const size_t n = members_.size() * pass.entries.size();
  pass.loss.resize(n);
  pass.similarity.resize(n);
  return pass;
}

at::Tensor Guide::score_cutouts(Pass& pass, int64_t begin, int64_t count, const c10::Device& device) {
  const size_t n_prompts = pass.entries.size();
  const int64_t total = pass.plans.begin()->second.count;
  const double share = static_cast<double>(count) / static_cast<double>(total);  // of the step's cutouts
  Cutouts sampler(pass.opt.cutouts, pass.opt.augments);
  auto add = [](at::Tensor& sum, const at::Tensor& value) { sum = sum.defined() ? sum + value : value; };
  at::Tensor prompt_total;
  for (size_t m = 0; m < members_.size(); ++m) {
    auto& member = members_[m];
    const CutoutPlan& plan = pass.plans.at(member.config.vision.image_size);
    const auto& pre = member.config.preprocess;
    const auto member_device = model_device(member.model);
    at::Tensor member_loss;
    for (const auto& g : pass.groups) {
      const at::Tensor image = g.mask.defined() ? masked_composite(pass.image, g.mask) : pass.image;
      const at::Tensor cut = sampler.sample(image, plan, begin, count);  // (n, 3, S, S)
      at::Tensor embeds;  // (n, E) float
      if (pass.opt.cuda_graphs && member_device.is_cuda() && pass.groups.size() == 1) {  // one encode per member and call
        embeds = graphed(m, pass.opt.autocast)(clipnet::normalize(cut.to(member_device), pre.mean, pre.std));
      } else {
        clipguide::AutocastGuard autocast(member_device.type(), pass.opt.autocast);  // no-op for kFloat
        embeds = member.model->encode_image(clipnet::normalize(cut.to(member_device), pre.mean, pre.std)).to(at::kFloat);
      }
      const at::Tensor embeds_unit = unit(embeds.detach());  // (n, E)
      for (size_t p : g.prompts) {
        const auto& e = pass.entries[p];
        const Target target{e.embeddings[m].to(embeds.device()), e.prompt.weight, e.prompt.stop};
        const at::Tensor l = prompt_loss(embeds, target, pass.opt.distance) * share;  // scalar
        add(member_loss, l);
        add(pass.loss[m * n_prompts + p], l.detach());
        add(pass.similarity[m * n_prompts + p], embeds_unit.matmul(unit(target.embedding).t()).mean() * share);
      }
    }
    if (member_loss.defined()) add(prompt_total, (member_loss * member.weight).to(device));
  }
  if (prompt_total.defined()) add(pass.prompt_total, prompt_total.detach());
  return prompt_total;
}

Guide::Regularisers Guide::regularisers(const at::Tensor& x, const GuideOptions& opt, int64_t step) const {
  Regularisers r;
  auto add = [&](at::Tensor value) {
    r.total = r.total.defined() ? r.total + value : value;
    return value;
  };
  if (opt.tv_weight != 0.0) r.tv = add(opt.tv_weight * total_variation(x));
  if (opt.symmetry_weight != 0.0) r.symmetry = add(opt.symmetry_weight * symmetry_loss(x));
  if (opt.saturation_weight != 0.0) r.saturation = add(opt.saturation_weight * saturation_loss(x));
  if (opt.init_weight != 0.0) {
    if (!opt.init_image.defined()) throw Error("Guide: init_weight is set but there is no init_image");
    at::Tensor init_image = opt.init_image;
    if (init_image.dim() == 3) init_image = init_image.unsqueeze(0);  // (1, 3, H', W')
    if (init_image.dim() != 4 || init_image.size(1) != 3) {
      throw Error("Guide: init_image must be (3, H, W) or (B, 3, H, W); got " + shape_str(init_image.sizes()));
    }
    init_image = init_image.detach().to(x.device(), at::kFloat);
    if (init_image.size(2) != x.size(2) || init_image.size(3) != x.size(3)) {
      init_image = at::upsample_bilinear2d(init_image, {x.size(2), x.size(3)}, /*align_corners=*/false);
    }
    r.init = add(opt.init_weight * init_image_loss(x, init_image.to(x.dtype()), step));
  }
  return r;
}

// This process's cutouts of the pass: [begin, end) of its `shards` contiguous parts (all of them for one).
std::pair<int64_t, int64_t> Guide::shard_range(const Pass& pass) const {
  const int64_t n = pass.plans.empty() ? 0 : pass.plans.begin()->second.count;
  const int64_t part = (n + pass.opt.shards - 1) / pass.opt.shards;
  const int64_t begin = std::min(n, pass.opt.shard * part);
  return {begin, std::min(n, begin + part)};
}

at::Tensor Guide::loss(const at::Tensor& image, int64_t step, GuideReport* report) {
  check_image(image);
  at::Tensor x = hooks_.attach_to_image(image, step);  // (B, 3, H, W): image hooks see d loss / d x
  Pass pass = begin_pass(x, step);
  const auto [begin, end] = shard_range(pass);
  const at::Tensor prompt_total = end > begin ? score_cutouts(pass, begin, end - begin, image.device()) : at::Tensor();
  const Regularisers reg = pass.opt.shard == 0 ? regularisers(x, pass.opt, step) : Regularisers{};
  at::Tensor total = prompt_total.defined() ? prompt_total : (x.sum() * 0.0).to(at::kFloat);
  if (reg.total.defined()) total = total + reg.total;
  if (pass.opt.report || report) finish_report(pass, total, reg, step, report);
  return total;
}

at::Tensor Guide::backward(const at::Tensor& image, int64_t step, GuideReport* report) {
  check_image(image);
  int64_t batches = 1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    batches = options_.cutn_batches;
  }
  if (batches <= 1) {
    at::Tensor total = loss(image, step, report);
    total.backward();
    return total.detach();
  }
  // CLIP's part micro-batch by micro-batch into a detached copy of the image, whose gradient then goes back
  // through the image's own graph (the generator) once, with the regularisers'.
  at::Tensor x = hooks_.attach_to_image(image, step);
  const at::Tensor leaf = x.detach().requires_grad_(true);
  Pass pass = begin_pass(leaf, step);
  const auto [first, end] = shard_range(pass);
  const int64_t chunk = std::max<int64_t>(1, (end - first + batches - 1) / std::max<int64_t>(batches, 1));
  for (int64_t begin = first; begin < end; begin += chunk) {
    const at::Tensor part = score_cutouts(pass, begin, std::min(chunk, end - begin), image.device());
    if (part.defined()) part.backward();
  }
  const Regularisers reg = pass.opt.shard == 0 ? regularisers(x, pass.opt, step) : Regularisers{};
  std::vector<at::Tensor> outputs, grads;
  if (leaf.grad().defined()) outputs.push_back(x), grads.push_back(leaf.grad());
  if (reg.total.defined()) outputs.push_back(reg.total), grads.push_back(at::ones_like(reg.total));
  if (!outputs.empty()) torch::autograd::backward(outputs, grads);
  at::Tensor total = pass.prompt_total.defined() ? pass.prompt_total : at::zeros({}, image.options().dtype(at::kFloat));
  if (reg.total.defined()) total = total + reg.total.detach();
  if (pass.opt.report || report) finish_report(pass, total, reg, step, report);
  return total.detach();
}

void Guide::finish_report(const Pass& pass, const at::Tensor& total, const Regularisers& reg, int64_t step,
                          GuideReport* report) {
  const size_t n_members = members_.size(), n_prompts = pass.entries.size();
  // Everything the report needs, in one tensor and one device → host copy.
  const auto where = at::TensorOptions().device(total.device()).dtype(at::kDouble);
  std::vector<at::Tensor> values{total.detach().to(where)};
  auto push = [&](const at::Tensor& t) {
    values.push_back(t.defined() ? t.detach().to(where).reshape({}) : at::zeros({}, where));
  };
  push(pass.prompt_total);
  push(reg.tv);
  push(reg.symmetry);
  push(reg.saturation);
  push(reg.init);
  for (const auto& t : pass.loss) push(t);
  for (const auto& t : pass.similarity) push(t);
  at::Tensor v = at::stack(values).cpu();  // (6 + 2 M P,)
  const double* d = v.data_ptr<double>();
  GuideReport r;
  r.step = step;
  r.total = d[0];
  r.prompt_loss = d[1];
  r.tv = d[2];
  r.symmetry = d[3];
  r.saturation = d[4];
  r.init = d[5];
  const double* pl = d + 6;
  const double* ps = pl + n_members * n_prompts;
  double abs_weights = 0.0;
  for (const auto& member : members_) abs_weights += std::abs(member.weight);
  for (size_t m = 0; m < n_members; ++m) {
    MemberReport mr{members_[m].name, members_[m].weight, 0.0};
    for (size_t p = 0; p < n_prompts; ++p) mr.loss += pl[m * n_prompts + p];
    r.members.push_back(mr);
  }
  for (size_t p = 0; p < n_prompts; ++p) {
    PromptReport pr;
    pr.label = pass.entries[p].prompt.label();
    pr.weight = pass.entries[p].prompt.weight;
    for (size_t m = 0; m < n_members; ++m) {
      const double l = pl[m * n_prompts + p], s = ps[m * n_prompts + p];
      pr.member_loss.push_back(l);
      pr.member_similarity.push_back(s);
      pr.loss += members_[m].weight * l;
      pr.similarity += abs_weights > 0 ? std::abs(members_[m].weight) / abs_weights * s : s / n_members;
    }
    r.prompts.push_back(std::move(pr));
  }
  if (report) *report = r;
  std::lock_guard<std::mutex> lock(mutex_);
  last_report_ = std::move(r);
}

}  // namespace clipguide::guidance
