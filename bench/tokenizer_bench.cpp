// Benchmark: clipnet::Tokenizer::encode against openai-clip's SimpleTokenizer.encode (bench/reference/tokenizer_ref.py)
// on the same corpus, same machine, one thread each; prints strings/s for both and the ratio (goal: >= 5x).
// The corpus: CLIP's zero-shot prompt templates x class names, plus free-form prompts (Unicode, emoji, long ones).
#include "clipnet/tokenizer.h"
#include "core/error.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string python = "python3";  // Python with openai-clip for the reference ("" or --no-reference: skip)
  std::string vocab;               // bpe_simple_vocab_16e6.txt.gz (default: the repository's tests/data/openai-clip/)
  double seconds = 3.0;            // minimum timed duration per side
  int threads = 1;                 // also time this many threads sharing one Tokenizer (1: skip)
  bool no_reference = false;       // only time clipguide
};

std::vector<std::string> build_corpus() {
  // ref: openai/CLIP notebooks/Prompt_Engineering_for_ImageNet.ipynb (a subset of the 80 templates)
  const std::vector<std::string> templates = {
      "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
      "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
      "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
      "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
      "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
      "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
      "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
      "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
      "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.",
      "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.",
      "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
      "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
      "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
      "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.",
      "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
      "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
      "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.", "art of the {}.",
      "a drawing of the {}.", "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
      "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.",
      "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}."};
  const std::vector<std::string> classes = {
      "tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray", "stingray",
      "rooster", "hen", "ostrich", "brambling", "goldfinch", "house finch", "junco", "indigo bunting",
      "American robin", "bulbul", "jay", "magpie", "chickadee", "crème brûlée", "café au lait", "piña colada",
      "Ελληνικός ναός", "日本の寺"};
  std::vector<std::string> corpus;
  for (const auto& t : templates) {
    for (const auto& c : classes) {
      std::string s = t;
      s.replace(s.find("{}"), 2, c);
      corpus.push_back(s);
    }
  }
  const std::vector<std::string> free_form = {
      "A beautiful painting of a singular lighthouse, shining its light across a tumultuous sea of blood by greg "
      "rutkowski and thomas kinkade, Trending on artstation.",
      "a surreal landscape, floating islands, waterfalls, volumetric lighting, octane render, 8k, highly detailed",
      "portrait of a cyberpunk samurai, neon lights, rain, cinematic, unreal engine 5, ray tracing",
      "an astronaut riding a horse on mars, photorealistic, 35mm, f/1.8, bokeh",
      "Ein Gemälde einer Stadt bei Nacht im Stil von Caspar David Friedrich",
      "Une forêt enchantée au crépuscule, aquarelle, très détaillée",
      "Картина маслом: зимний лес и река на закате",
      "東京の夜景、ネオン、雨、映画のような照明",
      "서울의 밤거리, 네온사인, 비 오는 날",
      "a cat 🐱 wearing a hat 🎩 in space 🚀✨",
      "&quot;The Starry Night&quot; by Vincent van Gogh &amp; friends",
      "“smart quotes” and ‘apostrophes’ aren’t a problem",
      "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ and ﬁne ligatures",
      "matte painting of a castle on a cliff, dramatic sky, epic composition, artstation hq, by Albert Bierstadt, "
      "Ivan Aivazovsky, Caspar David Friedrich, John Martin, Thomas Cole, Frederic Edwin Church, Hudson River School, "
      "golden hour, god rays, mist, ultra detailed, 4k wallpaper"};
  for (int i = 0; i < 3; ++i) corpus.insert(corpus.end(), free_form.begin(), free_form.end());
  return corpus;
}

// Runs a command and parses the last line of its standard output as JSON.
nlohmann::json run_json(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw clipguide::Error("cannot run: " + command);
  std::string output;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), pipe.get())) output += buf.data();
  int status = pclose(pipe.release());
  if (status != 0) throw clipguide::Error("reference failed (status " + std::to_string(status) + "): " + command);
  auto end = output.find_last_not_of('\n');
  auto begin = output.find_last_of('\n', end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return nlohmann::json::parse(output.substr(begin, end - begin + 1));
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Whole passes over the corpus for at least `seconds`; returns strings/s and adds the id count of one pass.
double time_passes(const clipguide::clipnet::Tokenizer& tok, const std::vector<std::string>& corpus, double seconds,
                   size_t& ids_per_pass) {
  size_t passes = 0;
  ids_per_pass = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    size_t ids = 0;
    for (const auto& s : corpus) ids += tok.encode(s).size();
    ids_per_pass = ids;
    ++passes;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return static_cast<double>(passes * corpus.size()) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.vocab = (std::filesystem::path(CLIPGUIDE_SOURCE_DIR) / "tests" / "data" / "openai-clip" / "bpe_simple_vocab_16e6.txt.gz")
                  .lexically_normal()
                  .string();
  CLI::App app("Tokenizer throughput: clipguide vs openai-clip's SimpleTokenizer (same corpus, one thread each)");
  app.add_option("--python", opt.python, "Python with openai-clip for the reference")->capture_default_str();
  app.add_option("--vocab", opt.vocab, "OpenAI's bpe_simple_vocab_16e6.txt.gz")->capture_default_str();
  app.add_option("--seconds", opt.seconds, "Minimum timed seconds per side")->capture_default_str();
  app.add_option("--threads", opt.threads, "Also time this many threads sharing one tokenizer (1: skip)")->capture_default_str();
  app.add_flag("--no-reference", opt.no_reference, "Only time clipguide")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    const std::vector<std::string> corpus = build_corpus();
    std::cout << "tokenizer_bench: " << corpus.size() << " strings, vocabulary " << opt.vocab << "\n";

    const auto load_start = Clock::now();
    auto tok = clipguide::clipnet::Tokenizer::from_file(opt.vocab);
    const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
    const auto cold_start = Clock::now();
    size_t cold_ids = 0;
    for (const auto& s : corpus) cold_ids += tok.encode(s).size();
    const double cold = corpus.size() / std::chrono::duration<double>(Clock::now() - cold_start).count();
    size_t ids_per_pass = 0;
    const double ours = time_passes(tok, corpus, opt.seconds, ids_per_pass);
    std::printf("clipguide  : %10.0f strings/s  (first pass, empty word cache: %.0f strings/s; vocabulary load %.0f ms)\n",
                ours, cold, load_s * 1e3);

    if (opt.threads > 1) {
      std::vector<double> rates(static_cast<size_t>(opt.threads));
      std::vector<std::thread> pool;
      for (int t = 0; t < opt.threads; ++t) {
        pool.emplace_back([&, t] {
          size_t n = 0;
          rates[static_cast<size_t>(t)] = time_passes(tok, corpus, opt.seconds, n);
        });
      }
      for (auto& th : pool) th.join();
      double sum = 0;
      for (double r : rates) sum += r;
      std::printf("clipguide  : %10.0f strings/s with %d threads sharing one tokenizer\n", sum, opt.threads);
    }

    if (opt.no_reference || opt.python.empty()) return 0;
    const auto corpus_path = std::filesystem::temp_directory_path() / ("clipguide_tokenizer_bench_" + std::to_string(::getpid()) + ".json");
    {
      std::ofstream out(corpus_path);
      out << nlohmann::json(corpus).dump();
    }
    const std::string script = std::string(CLIPGUIDE_SOURCE_DIR) + "/bench/reference/tokenizer_ref.py";
    nlohmann::json ref;
    try {
      ref = run_json(shell_quote(opt.python) + " " + shell_quote(script) + " --corpus " + shell_quote(corpus_path.string()) +
                     " --vocab " + shell_quote(opt.vocab) + " --seconds " + std::to_string(opt.seconds));
    } catch (...) {
      std::remove(corpus_path.c_str());
      throw;
    }
    std::remove(corpus_path.c_str());
    const double theirs = ref["strings_per_s"].get<double>();
    std::printf("python ref : %10.0f strings/s  (first pass: %.0f strings/s)  [openai-clip SimpleTokenizer.encode]\n", theirs,
                ref["cold_strings_per_s"].get<double>());
    std::printf("ratio      : %10.1fx  (goal >= 5x; first pass %.1fx)\n", ours / theirs, cold / ref["cold_strings_per_s"].get<double>());
    // Same corpus, same vocabulary: the id counts must agree (a cheap check that both did the same work).
    const size_t ref_ids_per_pass =
        ref["ids"].get<size_t>() / static_cast<size_t>(ref["passes"].get<int64_t>() + 1);
    if (ref_ids_per_pass != ids_per_pass || cold_ids != ids_per_pass) {
      std::printf("WARNING: id counts differ: clipguide %zu per pass, reference %zu\n", ids_per_pass, ref_ids_per_pass);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "tokenizer_bench: " << clipguide::error_text(e) << "\n";
    return 1;
  }
}
