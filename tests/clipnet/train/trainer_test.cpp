// Tests for clipnet/train/trainer, bpe_trainer and evaluation: AdamW parameter groups, the cosine schedule,
// a trained BPE vocabulary read back by clipnet::Tokenizer, a tiny shapes-world run whose loss falls,
// exact resume (20 steps vs 10 + resume 10), atomic checkpoints, bf16 autocast, gradient checkpointing,
// evaluation and linear probe.
#include "clipnet/text_clean.h"
#include "clipnet/tokenizer.h"
#include "clipnet/train/bpe_trainer.h"
#include "clipnet/train/evaluation.h"
#include "clipnet/train/shapes_world.h"
#include "clipnet/train/trainer.h"
#include "core/error.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace clipguide::train {
namespace {
namespace fs = std::filesystem;

// A CLIP small enough to train for 30 steps in seconds: 16 px ViT, one layer per tower.
const char* kTinyModel = R"({"embed_dim": 32,
  "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
  "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}})";

// A bigger one (4 px patches, width 64) that learns the shapes world within a few hundred steps.
const char* kSmallModel = R"({"embed_dim": 64,
  "vision_cfg": {"image_size": 16, "layers": 1, "width": 64, "patch_size": 4, "head_width": 32},
  "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}})";

TrainOptions tiny_options(const fs::path& dir, int64_t steps) {
  at::set_num_threads(1);  // tiny matrices: one thread is fastest on a shared machine
  TrainOptions o;
  o.model = kTinyModel;
  o.train_data = "shapes";
  o.batch_size = 16;
  o.lr = 2e-3;
  o.wd = 0.1;
  o.warmup = 3;
  o.steps = steps;
  o.workers = 1;
  o.seed = 7;
  o.bpe_vocab_size = 600;
  o.bpe_captions = 500;
  o.checkpoint_dir = dir / "checkpoints";
  o.save_frequency = 0;
  return o;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s;
}

TEST(Trainer, ParamGroupsFollowOpenClipsRule) {
  std::vector<std::pair<std::string, at::Tensor>> named = {
      {"visual.conv1.weight", at::zeros({4, 3, 2, 2})},
      {"visual.class_embedding", at::zeros({4})},
      {"visual.positional_embedding", at::zeros({5, 4})},
      {"visual.ln_pre.weight", at::zeros({4})},
      {"visual.transformer.resblocks.0.attn.in_proj_weight", at::zeros({12, 4})},
      {"visual.transformer.resblocks.0.attn.in_proj_bias", at::zeros({12})},
      {"visual.transformer.resblocks.0.ln_1.weight", at::zeros({4})},
      {"token_embedding.weight", at::zeros({10, 4})},
      {"text_projection", at::zeros({4, 4})},
      {"logit_scale", at::zeros({})},
      {"logit_bias", at::zeros({})},
  };
  const ParamGroups g = split_param_groups(named);
  const std::vector<std::string> decay = {"visual.conv1.weight", "visual.positional_embedding",
                                          "visual.transformer.resblocks.0.attn.in_proj_weight",
                                          "token_embedding.weight", "text_projection"};
  EXPECT_EQ(g.decay, decay);
  const std::vector<std::string> no_decay = {"visual.class_embedding", "visual.ln_pre.weight",
                                             "visual.transformer.resblocks.0.attn.in_proj_bias",
                                             "visual.transformer.resblocks.0.ln_1.weight", "logit_scale", "logit_bias"};
  EXPECT_EQ(g.no_decay, no_decay);
}

TEST(Trainer, CosineScheduleWithLinearWarmup) {
  EXPECT_DOUBLE_EQ(cosine_lr(1.0, 10, 110, 0), 0.1);
  EXPECT_DOUBLE_EQ(cosine_lr(1.0, 10, 110, 4), 0.5);
  EXPECT_DOUBLE_EQ(cosine_lr(1.0, 10, 110, 9), 1.0);
  EXPECT_DOUBLE_EQ(cosine_lr(1.0, 10, 110, 10), 1.0);
  EXPECT_NEAR(cosine_lr(1.0, 10, 110, 60), 0.5, 1e-12);
  EXPECT_NEAR(cosine_lr(1.0, 10, 110, 110), 0.0, 1e-12);
  EXPECT_NEAR(cosine_lr(2.0, 0, 100, 25), 2.0 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
}

TEST(Trainer, TrainedBpeVocabularyRoundTripsCaptions) {
  ShapesWorld world;
  std::vector<std::string> captions;
  for (int i = 0; i < 300; ++i) captions.push_back(world.caption(i));
  BpeTrainOptions options;
  options.vocab_size = 700;
  const BpeVocabulary vocab = train_bpe(captions, options);
  EXPECT_EQ(vocab.tokens.size(), 700u);
  const fs::path dir = test::temp_dir() / "bpe";
  write_bpe_vocabulary(vocab, dir);
  const auto tok = clipnet::Tokenizer::from_file(dir);
  EXPECT_EQ(tok.vocab_size(), 700);
  EXPECT_EQ(tok.eot_token(), 699);
  EXPECT_EQ(tok.sot_token(), 698);
  int64_t tokens = 0, bytes = 0;
  for (int i = 0; i < 400; ++i) {  // 100 captions not seen in training too
    const std::string c = world.caption(i);
    const auto ids = tok.encode(c);
    std::string expected;
    for (const auto& w : clipnet::detail::pretokenize(clipnet::clean_text(c))) expected += w + " ";
    EXPECT_EQ(tok.decode(ids), expected) << c;
    tokens += static_cast<int64_t>(ids.size());
    bytes += static_cast<int64_t>(c.size());
  }
  std::printf("BPE 700: %.2f bytes per token over 400 captions\n", double(bytes) / double(tokens));
  EXPECT_GT(double(bytes) / double(tokens), 3.0);
  EXPECT_THROW(train_bpe(captions, BpeTrainOptions{100, 2}), Error);
}

TEST(Trainer, TinyShapesRunLossGoesDown) {
  const fs::path dir = test::temp_dir();
  TrainOptions o = tiny_options(dir, 300);
  o.model = kSmallModel;
  o.batch_size = 32;
  o.lr = 1e-3;
  o.warmup = 20;
  o.log_file = dir / "log.jsonl";
  o.zeroshot_every_steps = 300;
  o.zeroshot_samples = 128;
  o.retrieval_k = 32;
  Trainer trainer(o, nullptr);
  std::vector<StepReport> reports;
  std::vector<EvalReport> evals;
  const auto losses = trainer.run([&](const StepReport& r) { reports.push_back(r); },
                                  [&](const EvalReport& r) { evals.push_back(r); });
  ASSERT_EQ(losses.size(), 300u);
  auto mean = [&](size_t b, size_t e) { double s = 0; for (size_t i = b; i < e; ++i) s += losses[i]; return s / double(e - b); };
  std::printf("mean loss over steps:");
  for (size_t b = 0; b < 300; b += 30) std::printf(" %zu-%zu %.3f", b + 1, b + 30, mean(b, b + 30));
  std::printf("\n(chance ln 32 = %.3f)\n", std::log(32.0));
  const double first = mean(0, 30), last = mean(270, 300);
  EXPECT_LT(last, first - 0.25);
  EXPECT_LT(last, std::log(32.0) - 0.25);  // below chance: it matches captions to pictures
  ASSERT_EQ(evals.size(), 1u);
  std::printf("zero-shot after 300 steps:");
  for (const auto& [k, v] : evals[0].zero_shot) std::printf(" %s %.3f", k.c_str(), v);
  std::printf("; caption R@1 %.3f R@5 %.3f among 32\n", evals[0].recall_at_1, evals[0].recall_at_5);
  EXPECT_GT(evals[0].recall_at_5, 5.0 / 32.0);  // better than chance
  EXPECT_EQ(reports.size(), 300u);
  EXPECT_GT(reports.back().samples_per_s, 0);
  // JSON-lines log: one line per step with the fields.
  const std::string log = read(o.log_file);
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 301);  // 300 steps + 1 evaluation
  for (const char* key : {"\"step\"", "\"loss\"", "\"lr\"", "\"logit_scale\"", "\"samples_per_s\"", "\"data_wait_s\""})
    EXPECT_NE(log.find(key), std::string::npos) << key;
  // The final checkpoint carries the trained vocabulary and config.
  EXPECT_EQ(read(o.checkpoint_dir / "latest"), "step_00000300\n");
  EXPECT_TRUE(fs::exists(o.checkpoint_dir / "step_00000300" / "vocab" / "merges.txt"));
  const auto tok = clipnet::Tokenizer::from_file(o.checkpoint_dir / "step_00000300" / "vocab");
  EXPECT_EQ(tok.vocab_size(), 600);
}

TEST(Trainer, ResumeContinuesExactly) {
  const fs::path dir = test::temp_dir();
  std::vector<double> straight, resumed;
  {
    Trainer t(tiny_options(dir / "a", 20), nullptr);
    for (int i = 0; i < 20; ++i) straight.push_back(t.step());
  }
  {
    Trainer t(tiny_options(dir / "b", 20), nullptr);
    for (int i = 0; i < 10; ++i) resumed.push_back(t.step());
    t.save_checkpoint();
  }
  {
    TrainOptions o = tiny_options(dir / "b", 20);
    o.resume = "latest";
    Trainer t(o, nullptr);
    EXPECT_EQ(t.current_step(), 10);
    for (int i = 0; i < 10; ++i) resumed.push_back(t.step());
  }
  for (int i = 0; i < 20; ++i) {
    std::printf("step %2d  uninterrupted %.9f  resumed %.9f  diff %.3g\n", i + 1, straight[i], resumed[i],
                straight[i] - resumed[i]);
    EXPECT_EQ(straight[i], resumed[i]) << "step " << i + 1;
  }
}

TEST(Trainer, InterruptedCheckpointLeavesLatestOnThePreviousOne) {
  const fs::path dir = test::temp_dir();
  TrainOptions o = tiny_options(dir, 20);
  auto leftovers = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(o.checkpoint_dir))
      n += e.path().filename().string().rfind(".step_", 0) == 0;
    return n;
  };
  {
    Trainer t(o, nullptr);
    for (int i = 0; i < 3; ++i) t.step();
    t.save_checkpoint();
    for (int i = 0; i < 2; ++i) t.step();
    // A crash (here: an exception) after the weights but before the optimiser state is written.
    EXPECT_THROW(t.save_checkpoint([](const std::string& file) {
      if (file == "optimizer.safetensors") throw std::runtime_error("simulated crash while writing");
    }), std::runtime_error);
  }
  EXPECT_EQ(read(o.checkpoint_dir / "latest"), "step_00000003\n");
  EXPECT_FALSE(fs::exists(o.checkpoint_dir / "step_00000005"));
  EXPECT_EQ(leftovers(), 1);  // the half-written temporary folder, as a kill would leave it
  EXPECT_EQ(resolve_checkpoint("latest", o.checkpoint_dir), o.checkpoint_dir / "step_00000003");
  o.resume = "latest";
  Trainer t(o, nullptr);
  EXPECT_EQ(t.current_step(), 3);
  EXPECT_TRUE(std::isfinite(t.step()));
  t.save_checkpoint();
  EXPECT_EQ(read(o.checkpoint_dir / "latest"), "step_00000004\n");
  EXPECT_EQ(leftovers(), 0);  // the next save clears it
  EXPECT_THROW(resolve_checkpoint(dir.string(), o.checkpoint_dir), Error);
}

TEST(Trainer, Bf16AutocastTrains) {
  const fs::path dir = test::temp_dir();
  TrainOptions o = tiny_options(dir, 4);
  o.precision = "bf16";
  Trainer t(o, nullptr);
  Trainer reference(tiny_options(dir / "fp32", 4), nullptr);
  for (int i = 0; i < 4; ++i) {
    const double bf16 = t.step(), fp32 = reference.step();
    std::printf("step %d: bf16 autocast %.5f, fp32 %.5f\n", i + 1, bf16, fp32);
    EXPECT_NEAR(bf16, fp32, 0.05);
  }
  EXPECT_EQ(t.model()->logit_scale.scalar_type(), at::kFloat);  // fp32 master weights
  EXPECT_EQ(t.model()->visual_vit->conv1->weight.scalar_type(), at::kFloat);
}

TEST(Trainer, SiglipAndAccumulationRun) {
  const fs::path dir = test::temp_dir();
  TrainOptions o = tiny_options(dir, 3);
  o.loss.siglip = true;
  o.accum_freq = 2;
  Trainer t(o, nullptr);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isfinite(t.step()));
  EXPECT_NEAR(std::exp(t.model()->logit_scale.item<double>()), 10.0, 0.5);
}

TEST(Trainer, AccumulationEqualsTheBigBatch) {
  const fs::path dir = test::temp_dir();
  TrainOptions big = tiny_options(dir / "big", 4), accum = tiny_options(dir / "accum", 4);
  accum.batch_size = 8;
  accum.accum_freq = 2;
  Trainer a(big, nullptr), b(accum, nullptr);
  for (int i = 0; i < 4; ++i) {
    const double la = a.step(), lb = b.step();
    std::printf("step %d: batch 16 %.7f, 2 x 8 accumulated %.7f\n", i + 1, la, lb);
    EXPECT_NEAR(la, lb, 1e-5);
  }
}

TEST(Trainer, GradCheckpointingTrainsLikeThePlainRun) {
  const fs::path dir = test::temp_dir();
  const char* tiny_resnet = R"({"embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}})";
  for (const char* model : {kTinyModel, tiny_resnet}) {
    TrainOptions plain = tiny_options(dir / "plain", 3), checkpointed = tiny_options(dir / "checkpointed", 3);
    plain.model = checkpointed.model = model;
    checkpointed.grad_checkpointing = true;
    Trainer a(plain, nullptr), b(checkpointed, nullptr);
    for (int i = 0; i < 3; ++i) {
      const double la = a.step(), lb = b.step();
      std::printf("%s step %d: plain %.9f, grad checkpointing %.9f\n", a.config().vision.is_resnet() ? "ResNet" : "ViT",
                  i + 1, la, lb);
      EXPECT_NEAR(la, lb, 1e-6);
    }
    double worst = 0;
    const auto pa = a.model()->named_parameters(), pb = b.model()->named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, test::max_abs_diff(pa[i].value(), pb[i].value()));
    std::printf("weights after 3 steps: max abs diff %.3g\n", worst);
    EXPECT_LE(worst, 1e-6);
  }
}

TEST(Trainer, BadOptionsAreErrors) {
  const fs::path dir = test::temp_dir();
  TrainOptions o = tiny_options(dir, 3);
  o.precision = "fp8";
  EXPECT_THROW(Trainer(o, nullptr), Error);
  o = tiny_options(dir, 0);
  EXPECT_THROW(Trainer(o, nullptr), Error);  // infinite data without --steps or --train-num-samples
  o = tiny_options(dir, 3);
  o.dataset_type = "csv";
  EXPECT_THROW(Trainer(o, nullptr), Error);
}

TEST(Evaluation, ZeroShotAndRetrievalReportEveryAttribute) {
  const fs::path dir = test::temp_dir();
  TrainOptions o = tiny_options(dir, 2);
  o.zeroshot_samples = 64;
  o.retrieval_k = 16;
  Trainer t(o, nullptr);
  const EvalReport r = t.evaluate();
  for (const char* a : {"colour", "shape", "size", "position", "background"}) {
    ASSERT_TRUE(r.zero_shot.count(a)) << a;
    EXPECT_GE(r.zero_shot.at(a), 0.0);
    EXPECT_LE(r.zero_shot.at(a), 1.0);
  }
  EXPECT_GE(r.recall_at_1, 0.0);
  EXPECT_GE(r.recall_at_5, r.recall_at_1);
}

TEST(Evaluation, LinearProbeSeparatesSeparableFeatures) {
  at::manual_seed(0);
  const at::Tensor centres = at::randn({3, 8}) * 3;
  auto make = [&](int64_t n) {
    at::Tensor y = at::randint(0, 3, {n}, at::kLong);
    return std::pair{centres.index_select(0, y) + 0.3 * at::randn({n, 8}), y};
  };
  auto [xtr, ytr] = make(120);
  auto [xte, yte] = make(60);
  const double acc = linear_probe(xtr, ytr, xte, yte, 3);
  std::printf("linear probe accuracy on separable clusters: %.3f\n", acc);
  EXPECT_GT(acc, 0.95);
  EXPECT_THROW(linear_probe(xtr, ytr.narrow(0, 0, 5), xte, yte, 3), Error);
}

}  // namespace
}  // namespace clipguide::train
