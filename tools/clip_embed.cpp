// clip-embed: tokens, text and image embeddings, logits and zero-shot label probabilities from any CLIP
// weight file, printed as one JSON object (or written as .npy files). Other scripts parse this output:
// the key names are an interface.
#include "app/cli.h"
#include "clipnet/checkpoint.h"
#include "clipnet/default_model.h"
#include "clipnet/preprocess.h"
#include "clipnet/tokenizer.h"
#include "clipnet/zero_shot.h"
#include "core/device.h"
#include "core/error.h"
#include "core/io/npy.h"
#include "core/memory.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/stack.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <optional>

namespace cn = clipguide::clipnet;
using json = nlohmann::json;

namespace {

struct Options {
  std::string model;                    // weight file or folder (default: the shipped model, clipnet/default_model.h)
  std::string config;                   // architecture override: builtin name or JSON file
  std::string vocab;                    // tokenizer vocabulary; default: found beside the model
  std::vector<std::string> texts;       // --text, repeatable
  std::vector<std::string> images;      // --image, repeatable
  bool tokens_only = false;             // only tokenize (needs --vocab or a model folder with one)
  bool truncate = false;                // cut texts longer than the context instead of failing
  std::string npy_dir;                  // write arrays as .npy files here instead of JSON numbers
  std::string labels;                   // comma-separated zero-shot labels
  std::vector<std::string> templates;   // --template, repeatable ("{}" is the label)
  std::string templates_file;           // one template per line
  std::string device = "cpu";           // cpu, cuda or auto
};

json to_json(const at::Tensor& t) {  // (N, D) float → [[...], ...]
  auto c = t.detach().to(at::kDouble).cpu().contiguous();
  json rows = json::array();
  for (int64_t i = 0; i < c.size(0); ++i) {
    const double* p = c[i].data_ptr<double>();
    rows.push_back(std::vector<double>(p, p + c.size(1)));
  }
  return rows;
}

std::vector<std::string> split_labels(const std::string& text) {
  std::vector<std::string> labels;
  std::string current;
  auto flush = [&] {
    auto b = current.find_first_not_of(" \t"), e = current.find_last_not_of(" \t");
    if (b == std::string::npos) throw clipguide::Error("--labels: empty label in '" + text + "'");
    labels.push_back(current.substr(b, e - b + 1));
    current.clear();
  };
  for (char ch : text) {
    if (ch == ',') flush(); else current += ch;
  }
  flush();
  return labels;
}

int run(Options opt) {
  // No --model: the shipped default (and its vocabulary), unless only tokenizing with a given --vocab.
  if (opt.model.empty() && !(opt.tokens_only && !opt.vocab.empty())) opt.model = cn::default_model_path().string();
  json out;
  std::optional<cn::LoadedClip> clip;
  cn::ClipLoadOptions load;
  load.config = opt.config;
  load.device = clipguide::parse_device(opt.device);
  if (!opt.tokens_only) {
    clip = cn::load_clip(opt.model, load);
  } else if (!opt.images.empty() || !opt.labels.empty()) {
    throw clipguide::Error("--tokens-only takes only --text (and --vocab or --model)");
  }

  // The vocabulary: --vocab, else one found beside the model.
  std::optional<cn::Tokenizer> tokenizer;
  if (!opt.vocab.empty()) {
    tokenizer = cn::Tokenizer::from_file(opt.vocab);
  } else if (!opt.model.empty() && std::filesystem::is_directory(opt.model)) {
    tokenizer = cn::Tokenizer::from_file(opt.model);
  }
  if (!tokenizer && (!opt.texts.empty() || !opt.labels.empty())) {
    throw clipguide::Error("no vocabulary: pass --vocab (OpenAI's bpe_simple_vocab_16e6.txt.gz, or a Hugging Face "
                           "vocab.json/tokenizer.json), or a model folder that contains one");
  }
  if (clip && tokenizer) {
    cn::check_vocabulary_fits(tokenizer->vocab_size(), clip->config, opt.vocab.empty() ? opt.model : opt.vocab, opt.model);
  }
  const int64_t context = clip ? clip->config.text.context_length : 77;

  json tokens = json::array();
  for (const auto& text : opt.texts) {
    std::vector<int64_t> ids = tokenizer->encode(text);
    ids.insert(ids.begin(), tokenizer->sot_token());
    ids.push_back(tokenizer->eot_token());
    if (static_cast<int64_t>(ids.size()) > context) {
      if (!opt.truncate) {
        throw clipguide::Error("--text '" + text.substr(0, 40) + (text.size() > 40 ? "...'" : "'") + " has " +
                               std::to_string(ids.size()) + " tokens, more than the context length " +
                               std::to_string(context) + " (pass --truncate to cut it)");
      }
      ids.resize(context);  // as clip.tokenize(truncate=True): keep the first tokens, end with EOT
      ids.back() = tokenizer->eot_token();
    }
    tokens.push_back(ids);
  }
  out["tokens"] = tokens;
  if (!clip) {
    std::cout << out.dump() << "\n";
    return 0;
  }

  auto& model = clip->model;
  const auto& cfg = clip->config;
  const auto device = load.device;
  torch::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> arrays;  // name → tensor, for --npy or JSON

  at::Tensor text_emb, image_emb;
  if (!opt.texts.empty()) {
    text_emb = model->encode_text(tokenizer->tokenize(opt.texts, context, opt.truncate).to(device));  // (T, E)
    arrays["text_embeddings"] = text_emb;
  }
  if (!opt.images.empty()) {
    std::vector<at::Tensor> batch;
    for (const auto& file : opt.images) {
      batch.push_back(cn::preprocess_file(file, cfg.vision.image_size, cfg.preprocess.mean, cfg.preprocess.std));
    }
    image_emb = model->encode_image(at::stack(batch).to(device));  // (I, E)
    arrays["image_embeddings"] = image_emb;
  }
  if (text_emb.defined() && image_emb.defined()) {
    arrays["logits_per_image"] = cn::logits(model, image_emb, text_emb);  // (I, T)
  }
  if (!opt.labels.empty()) {
    if (!image_emb.defined()) throw clipguide::Error("--labels needs at least one --image");
    std::vector<std::string> templates = opt.templates;
    if (!opt.templates_file.empty()) {
      auto more = cn::read_templates(opt.templates_file);
      templates.insert(templates.end(), more.begin(), more.end());
    }
    if (templates.empty()) templates = cn::builtin_templates();
    auto labels = split_labels(opt.labels);
    auto classifier = cn::zero_shot_classifier(model, *tokenizer, labels, templates, context);  // (K, E)
    arrays["label_probs"] = cn::zero_shot_probs(model, image_emb, classifier);                 // (I, K)
    out["labels"] = labels;
    out["templates"] = templates.size();
  }

  for (const auto& [name, tensor] : arrays) {
    if (opt.npy_dir.empty()) {
      out[name] = to_json(tensor);
    } else {
      std::filesystem::create_directories(opt.npy_dir);
      auto path = std::filesystem::path(opt.npy_dir) / (name + ".npy");
      clipguide::write_npy(path, tensor.detach().to(at::kFloat).cpu());
      out[name] = path.string();
    }
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  Options opt;
  CLI::App app{"clip-embed: CLIP tokens, embeddings, logits and zero-shot probabilities as JSON"};
  app.option_defaults()->always_capture_default();
  app.add_option("--model,-m", opt.model, "CLIP weights: OpenAI .pt, open_clip .pt/.bin/.safetensors, Hugging Face folder or safetensors, clipguide folder; default: the shipped shapes-clip model");
  app.add_option("--config", opt.config, "Architecture: builtin name (e.g. ViT-B-32) or JSON file; default: inferred from the weights");
  app.add_option("--vocab", opt.vocab, "Tokenizer vocabulary: bpe_simple_vocab_16e6.txt.gz, vocab.json, tokenizer.json; default: beside the model");
  app.add_option("--text,-t", opt.texts, "Text to embed (repeatable)");
  app.add_option("--image,-i", opt.images, "Image file to embed (repeatable)");
  app.add_flag("--tokens-only", opt.tokens_only, "Only tokenize the texts (needs just a vocabulary)");
  app.add_flag("--truncate", opt.truncate, "Cut texts longer than the context length instead of failing");
  app.add_option("--npy", opt.npy_dir, "Write the arrays to this folder as .npy files; the JSON then holds their paths");
  app.add_option("--labels", opt.labels, "Comma-separated labels for zero-shot classification of the images");
  app.add_option("--template", opt.templates, "Zero-shot prompt template with {} for the label (repeatable; several are ensembled)");
  app.add_option("--templates", opt.templates_file, "File of templates, one per line (e.g. OpenAI's ImageNet set)");
  app.add_option("--device", opt.device, "cpu, cuda or auto");
  if (auto code = clipguide::app::parse(app, argc, argv, "clip-embed")) return *code;
  try {
    return run(opt);
  } catch (const std::exception& e) {
    return clipguide::app::report("clip-embed", e);
  }
}
