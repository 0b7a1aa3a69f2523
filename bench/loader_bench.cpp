// Training loader throughput (clipnet/train/loader.h): samples/s out of Loader::next() for the shapes
// world and for a WebDataset tar shard of JPEGs, at a given output size and worker counts, plus the cost
// of decoding an image from memory against going through a file. No Python reference: prints figures.
#include "clipnet/train/dataset.h"
#include "clipnet/train/loader.h"
#include "clipnet/train/shapes_world.h"
#include "core/error.h"
#include "core/image_io.h"

#include <ATen/ops/upsample_bilinear2d.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

namespace {

namespace cn = clipguide::clipnet;
namespace tr = clipguide::train;
using Clock = std::chrono::steady_clock;

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Minimal ustar writer: enough for a WebDataset shard of small files.
class TarWriter {
 public:
  explicit TarWriter(const std::filesystem::path& path) : out_(path, std::ios::binary) {}
  ~TarWriter() {
    const std::string end(1024, '\0');
    out_.write(end.data(), static_cast<std::streamsize>(end.size()));
  }
  void add(const std::string& name, const std::string& data) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.c_str());
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(data.size()));
    std::snprintf(h + 136, 12, "%011o", 0);
    h[156] = '0';
    std::memcpy(h + 257, "ustar\0" "00", 8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    out_.write(h, 512);
    out_.write(data.data(), static_cast<std::streamsize>(data.size()));
    const std::string pad((512 - data.size() % 512) % 512, '\0');
    out_.write(pad.data(), static_cast<std::streamsize>(pad.size()));
  }

 private:
  std::ofstream out_;
};

// A shard of `count` shapes-world pictures, upscaled to `side` and stored as JPEG, with captions.
void write_shard(const std::filesystem::path& path, int64_t count, int64_t side) {
  tr::ShapesWorld world;
  auto tmp = std::filesystem::temp_directory_path() / ("loader_bench_" + std::to_string(std::random_device{}()) + ".jpg");
  TarWriter tar(path);
  for (int64_t i = 0; i < count; ++i) {
    tr::Sample s = world.get(i);
    auto big = at::upsample_bilinear2d(s.image.unsqueeze(0).to(at::kFloat) / 255, {side, side}, false).squeeze(0);
    clipguide::write_image(tmp, big);
    char key[32];
    std::snprintf(key, sizeof(key), "%06lld", static_cast<long long>(i));
    tar.add(std::string(key) + ".jpg", read_bytes(tmp));
    tar.add(std::string(key) + ".txt", s.caption);
  }
  std::filesystem::remove(tmp);
}

// Microseconds per call of `f`: the best of 5 rounds of 50 calls (robust to other load on the machine).
template <typename F>
double best_us(F&& f) {
  double best = 1e30;
  for (int round = 0; round < 5; ++round) {
    const auto t0 = Clock::now();
    for (int i = 0; i < 50; ++i) f();
    best = std::min(best, std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 50);
  }
  return best;
}

struct Figures {
  double samples_per_s, wait_fraction;
};

Figures measure(const std::shared_ptr<const tr::Dataset>& data, tr::LoaderOptions o, int64_t batches) {
  tr::Loader loader(data, o);
  for (int k = 0; k < 2;) k += loader.next() ? 1 : 0;  // warm-up: threads started, queue primed
  const auto before = loader.stats();
  int64_t got = 0;
  while (got < batches) got += loader.next() ? 1 : 0;
  const auto after = loader.stats();
  const double elapsed = after.elapsed_s - before.elapsed_s;
  return {static_cast<double>(after.samples - before.samples) / elapsed, (after.wait_s - before.wait_s) / elapsed};
}

}  // namespace

int main(int argc, char** argv) {
  std::string python, tar_path;
  int64_t batch = 64, size = 64, batches = 40, tar_samples = 512, tar_side = 128;
  std::vector<int> workers = {1, 2};
  CLI::App app{"loader_bench: training loader samples/s (shapes world, tar shard)"};
  app.option_defaults()->always_capture_default();
  app.add_option("--batch", batch, "Batch size");
  app.add_option("--size", size, "Output image side S");
  app.add_option("--batches", batches, "Timed batches per configuration");
  app.add_option("--workers", workers, "Worker counts to try");
  app.add_option("--tar", tar_path, "WebDataset shard(s) to read (default: write one of shapes-world JPEGs)");
  app.add_option("--tar-samples", tar_samples, "Samples in the generated shard");
  app.add_option("--tar-side", tar_side, "Side of the JPEGs in the generated shard");
  app.add_option("--python", python, "Unused (bench/run_all.sh passes it to every benchmark)");
  CLI11_PARSE(app, argc, argv);

  try {
    std::filesystem::path generated;
    if (tar_path.empty()) {
      generated = std::filesystem::temp_directory_path() / ("loader_bench_" + std::to_string(std::random_device{}()) + ".tar");
      write_shard(generated, tar_samples, tar_side);
      tar_path = generated.string();
    }
    auto shapes = std::make_shared<tr::ShapesWorld>();
    auto tar = std::make_shared<tr::TarDataset>(tar_path);
    std::cout << "loader_bench: batch " << batch << ", output " << size << "x" << size << ", " << batches
              << " timed batches (" << std::thread::hardware_concurrency() << " hardware threads)\n";

    // Decoding one JPEG: from memory (what the tar reader does) against read_image on a file.
    {
      auto reader = tar->open_shard(0);
      auto encoded = reader->next();
      auto file = std::filesystem::temp_directory_path() / "loader_bench_decode.jpg";
      std::ofstream(file, std::ios::binary) << encoded->image_bytes;
      auto mem = best_us([&] { clipguide::decode_image(encoded->image_bytes.data(), encoded->image_bytes.size(), "x.jpg"); });
      auto disk = best_us([&] { clipguide::read_image(file); });
      std::filesystem::remove(file);
      std::printf("decode one %lldx%lld JPEG: %.0f us from memory, %.0f us through a file (best of 5 x 50)\n",
                  static_cast<long long>(tar_side), static_cast<long long>(tar_side), mem, disk);
    }

    // Per-sample costs on this thread: rendering a shapes-world picture, then the training transform.
    {
      tr::LoaderOptions o;
      o.image_size = size;
      const tr::Sample sample = shapes->get(0);
      int64_t index = 0;
      auto render = best_us([&] { shapes->get(index++); });
      auto transform = best_us([&] { tr::Loader::transform(sample.image, o, index++); });
      std::printf("per sample: shapes-world render %.0f us, random resized crop + resize + normalise %.0f us (best of 5 x 50)\n",
                  render, transform);
    }

    for (const auto& [name, data] : std::vector<std::pair<std::string, std::shared_ptr<const tr::Dataset>>>{
             {"shapes world (64 px, rendered)", shapes}, {"tar shard (" + tar_path + ")", tar}}) {
      for (int w : workers) {
        tr::LoaderOptions o;
        o.batch_size = batch;
        o.image_size = size;
        o.num_workers = w;
        o.drop_last = false;
        Figures f = measure(data, o, batches);
        std::printf("%-40s workers %d: %8.0f samples/s, next() waiting %4.1f%% of the time\n", name.c_str(), w,
                    f.samples_per_s, 100 * f.wait_fraction);
      }
    }
    if (!generated.empty()) std::filesystem::remove(generated);
  } catch (const std::exception& e) {
    std::cerr << "loader_bench: " << clipguide::error_text(e) << "\n";
    return 1;
  }
  return 0;
}
