// clip-train: CLIP pretraining from the command line with open_clip's flag names, on one process or
// several (torchrun --no-python --nproc-per-node N clip-train ...: c10d Gloo over torchrun's environment).
// Rank 0 writes checkpoints (<logs>/<name>/checkpoints) and the JSON-lines log (<logs>/<name>/out.jsonl),
// and prints a progress line per logged step on stderr.
#include "app/cli.h"
#include "clipnet/checkpoint.h"
#include "clipnet/train/distributed.h"
#include "clipnet/train/evaluation.h"
#include "clipnet/train/shapes_world.h"
#include "clipnet/train/trainer.h"
#include "core/error.h"
#include "core/memory.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

namespace tr = clipguide::train;

namespace {

// Flags that do not map one to one onto TrainOptions.
struct CliOptions {
  std::string logs = "./logs";     // --logs: parent of the run folder
  std::string name = "clip-train";  // --name: run folder under --logs
  std::string csv_separator = "\\t";  // --csv-separator: "\t", "tab" or one character
  bool local_loss = false, gather_with_grad = false, siglip = false;
  bool eval_only = false;           // --eval-only: evaluate --pretrained (or --resume's weights), no training
};

// Evaluation of any CLIP on the shapes world: linear probe (shape kind) always, zero-shot and retrieval when
// a vocabulary is given. One JSON object on stdout.
int evaluate_only(const tr::TrainOptions& options, const CliOptions& cli) {
  if (options.pretrained.empty()) throw clipguide::Error("--eval-only needs --pretrained (a CLIP weight file or folder)");
  clipguide::clipnet::ClipLoadOptions load;
  if (options.model != "ViT-B-32") load.config = options.model;  // the default means: the file's own config
  auto loaded = clipguide::clipnet::load_clip(options.pretrained, load);
  tr::ShapesEvalOptions e;
  e.seed = options.seed;
  e.image_size = loaded.config.vision.image_size;
  e.samples = options.zeroshot_samples;
  e.context_length = loaded.config.text.context_length;
  for (int c = 0; c < 3; ++c) e.mean[c] = loaded.config.preprocess.mean[c], e.std[c] = loaded.config.preprocess.std[c];
  std::string out = "{\"model\": \"" + options.pretrained + "\"";
  char buf[96];
  std::snprintf(buf, sizeof buf, ", \"linear_probe\": %.6f", tr::shapes_linear_probe(loaded.model, e));
  out += buf;
  if (!options.vocab.empty()) {
    const auto tokenizer = clipguide::clipnet::Tokenizer::from_file(options.vocab);
    const tr::EvalReport r = tr::evaluate_shapes_world(loaded.model, tokenizer, e);
    out += ", \"zero_shot\": {";
    bool first = true;
    for (const auto& [k, v] : r.zero_shot) {
      std::snprintf(buf, sizeof buf, "%s\"%s\": %.6f", first ? "" : ", ", k.c_str(), v);
      out += buf, first = false;
    }
    out += "}, \"swap\": {";
    first = true;
    for (const auto& [k, v] : r.swap) {
      std::snprintf(buf, sizeof buf, "%s\"%s\": %.6f", first ? "" : ", ", k.c_str(), v);
      out += buf, first = false;
    }
    std::snprintf(buf, sizeof buf, "}, \"recall@1\": %.6f, \"recall@5\": %.6f", r.recall_at_1, r.recall_at_5);
    out += buf;
  }
  std::printf("%s}\n", out.c_str());
  return 0;
}

// --csv-separator: "\\t", "tab", a real tab or any one character (checked while parsing, see main).
char parse_separator(const std::string& s) {
  if (s == "\\t" || s == "tab" || s == "\t") return '\t';
  return s[0];
}

std::string check_separator(const std::string& s) {
  if (s == "\\t" || s == "tab" || s.size() == 1) return "";
  return "must be one character, \\t or tab; got '" + s + "'";
}

int run(tr::TrainOptions options, const CliOptions& cli) {
  if (cli.eval_only) return evaluate_only(options, cli);
  const auto env = tr::DistributedEnv::from_environment();
  std::shared_ptr<tr::Communicator> comm = tr::init_distributed(env);
  const bool main_rank = comm->rank() == 0;
  const std::filesystem::path run_dir = std::filesystem::path(cli.logs) / cli.name;
  options.checkpoint_dir = run_dir / "checkpoints";
  options.log_file = run_dir / "out.jsonl";
  options.loss.siglip = cli.siglip;
  options.loss.local_loss = cli.local_loss;
  options.loss.gather_with_grad = cli.gather_with_grad;
  if (options.zeroshot_every_steps > 0 && options.val_data != "shapes:heldout")
    throw clipguide::Error("--val-data '" + options.val_data + "': zero-shot evaluation supports shapes:heldout only");

  tr::Trainer trainer(options, comm);
  if (main_rank) {
    std::fprintf(stderr, "clip-train: %s, %lld steps, batch %lld x %lld rank(s) x %lld accum, model %s (vocab %lld)\n",
                 comm->describe().c_str(), static_cast<long long>(trainer.total_steps()),
                 static_cast<long long>(options.batch_size), static_cast<long long>(comm->world_size()),
                 static_cast<long long>(options.accum_freq),
                 trainer.config().name.empty() ? "(JSON)" : trainer.config().name.c_str(),
                 static_cast<long long>(trainer.tokenizer().vocab_size()));
  }
  trainer.run(
      [&](const tr::StepReport& r) {
        if (!main_rank) return;
        std::fprintf(stderr, "step %lld/%lld epoch %lld loss %.4f lr %.3g scale %.2f %.0f samples/s wait %.2fs\n",
                     static_cast<long long>(r.step), static_cast<long long>(r.total_steps),
                     static_cast<long long>(r.epoch), r.loss, r.lr, r.logit_scale, r.samples_per_s, r.data_wait_s);
      },
      [&](const tr::EvalReport& r) {
        if (!main_rank) return;
        std::string line = "eval step " + std::to_string(r.step) + ":";
        char buf[64];
        for (const auto& [k, v] : r.zero_shot) std::snprintf(buf, sizeof buf, " %s %.3f", k.c_str(), v), line += buf;
        if (!r.swap.empty()) line += " | swap:";
        for (const auto& [k, v] : r.swap) std::snprintf(buf, sizeof buf, " %s %.3f", k.c_str(), v), line += buf;
        if (r.recall_at_1 >= 0) std::snprintf(buf, sizeof buf, " R@1 %.3f R@5 %.3f", r.recall_at_1, r.recall_at_5), line += buf;
        if (r.linear_probe >= 0) std::snprintf(buf, sizeof buf, " linear-probe %.3f", r.linear_probe), line += buf;
        std::fprintf(stderr, "%s\n", line.c_str());
      });
  comm->barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  tr::TrainOptions o;
  CliOptions cli;
  CLI::App app{"clip-train: CLIP pretraining (open_clip's flags; run under torchrun for several processes)"};
  app.option_defaults()->always_capture_default()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--train-data", o.train_data, "Training data: CSV/TSV manifest, tar shards ({a..b} and :: lists), image folder, or shapes");
  app.add_option("--shapes-group", o.shapes_group, "Shapes world: consecutive pictures in groups of N that differ in one thing, drawn per group from --shapes-vary (hard negatives)")->check(CLI::PositiveNumber);
  app.add_option("--shapes-shade", o.shapes_shade, "Shapes world: fraction of pictures drawn in random shades of their colours (each within its colour's region of RGB)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--shapes-vary", o.shapes_vary, "Shapes world: what a group varies, any of kind,colour,background,swap,size,position or all")
      ->check(CLI::Validator([](const std::string& v) {
        try { tr::parse_shapes_variations(v); } catch (const std::exception& e) { return std::string(e.what()); }
        return std::string();
      }, "LIST"));
  app.add_option_function<int>("--shapes-kind-group", [&o](int n) { o.shapes_group = n, o.shapes_vary = "kind"; },
                               "Shapes world: --shapes-group N --shapes-vary kind (the older name)")->check(CLI::PositiveNumber);
  app.add_option("--val-data", o.val_data, "Evaluation data for --zeroshot-frequency (shapes:heldout)");
  app.add_option("--dataset-type", o.dataset_type, "auto, csv, webdataset, folder or shapes")
      ->check(CLI::IsMember({"auto", "csv", "webdataset", "folder", "shapes"}));
  app.add_option("--csv-img-key", o.csv_img_key, "Manifest column with image paths");
  app.add_option("--csv-caption-key", o.csv_caption_key, "Manifest column with captions");
  app.add_option("--csv-separator", cli.csv_separator, "Manifest separator: \\t, tab, or one character")
      ->check(CLI::Validator(check_separator, "SEPARATOR"));
  app.add_option("--model", o.model, "Architecture: builtin config name (ViT-B-32, RN50, ...), JSON file, or JSON text");
  app.add_option("--image-size", o.image_size, "Input side in pixels; 0: the model config's");
  app.add_option("--vocab", o.vocab, "BPE vocabulary (bpe_simple_vocab_16e6.txt.gz, vocab.json, folder); default: train one from the captions");
  app.add_option("--bpe-vocab-size", o.bpe_vocab_size, "Size of the vocabulary trained when --vocab is not given");
  app.add_option("--batch-size", o.batch_size, "Batch size per process (per micro-batch)")->check(CLI::PositiveNumber);
  app.add_option("--lr", o.lr, "Peak learning rate");
  app.add_option("--wd", o.wd, "AdamW weight decay (not on gains, biases, class embedding, logit scale)");
  app.add_option("--beta1", o.beta1, "AdamW beta1");
  app.add_option("--beta2", o.beta2, "AdamW beta2");
  app.add_option("--eps", o.eps, "AdamW epsilon");
  app.add_option("--warmup", o.warmup, "Linear warmup steps");
  app.add_option("--epochs", o.epochs, "Epochs (when --steps is 0)");
  app.add_option("--train-num-samples", o.train_num_samples, "Samples per epoch for shards and the infinite shapes world");
  app.add_option("--steps", o.steps, "Total optimiser steps (0: epochs x steps per epoch)");
  app.add_option("--precision", o.precision, "fp32 or bf16 (CPU autocast, fp32 master weights)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--accum-freq", o.accum_freq, "Micro-batches per step (features cached, then recomputed with gradients, as open_clip)")->check(CLI::PositiveNumber);
  app.add_flag("--grad-checkpointing", o.grad_checkpointing, "Gradient checkpointing: transformer blocks and ResNet stages recomputed in backward (less memory, ~1 more forward)");
  app.add_flag("--siglip", cli.siglip, "SigLIP sigmoid loss with a learnable bias");
  app.add_flag("--local-loss", cli.local_loss, "Each rank's rows against all ranks' columns");
  app.add_flag("--gather-with-grad", cli.gather_with_grad, "Gathered features carry gradients back to their ranks");
  app.add_option("--seed", o.seed, "Seed for init, data order and augmentation");
  app.add_option("--workers", o.workers, "Data loader threads per process");
  app.add_option("--save-frequency", o.save_frequency, "Checkpoint every N epochs (0: off)");
  app.add_option("--save-every-steps", o.save_every_steps, "Checkpoint every N steps (0: off)");
  app.add_option("--resume", o.resume, "Checkpoint folder, or latest (<logs>/<name>/checkpoints/latest)");
  app.add_option("--logs,--logs-dir", cli.logs, "Folder for runs (--logs-dir under torchrun, whose --logs-specs makes --logs ambiguous)");
  app.add_option("--name", cli.name, "Run name: checkpoints and out.jsonl go to <logs>/<name>/");
  app.add_option("--log-every-n-steps", o.log_every_steps, "Log and print every N steps")->check(CLI::PositiveNumber);
  app.add_option("--zeroshot-frequency", o.zeroshot_every_steps, "Zero-shot evaluation every N steps (0: off)");
  app.add_option("--zeroshot-samples", o.zeroshot_samples, "Held-out pictures per zero-shot evaluation");
  app.add_flag("--linear-probe", o.linear_probe, "Linear probe (shape kind, shapes world) at the end");
  app.add_flag("--eval-only", cli.eval_only, "No training: linear probe (and zero-shot with --vocab) of --pretrained, as JSON on stdout");
  app.add_option("--pretrained", o.pretrained, "Start from these weights (fine-tuning; with --eval-only: the model evaluated): any CLIP weight file or folder (OpenAI, open_clip, Hugging Face, a clip-train checkpoint folder); a folder's tokenizer is used unless --vocab is given");
  if (auto code = clipguide::app::parse(app, argc, argv, "clip-train")) return *code;
  try {
    o.csv_separator = parse_separator(cli.csv_separator);
    return run(o, cli);
  } catch (const std::exception& e) {
    return clipguide::app::report("clip-train", e);
  }
}
