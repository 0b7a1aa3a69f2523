// open_dataset (open_dataset.h): picks the source kind from the spec's form.
#include "clipnet/train/open_dataset.h"

#include "core/error.h"

#include <algorithm>
#include <filesystem>

namespace clipguide::train {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::shared_ptr<Dataset> open_dataset(const std::string& spec, const OpenDatasetOptions& options) {
  if (spec == "shapes" || spec.rfind("shapes:", 0) == 0) {
    ShapesWorldOptions shapes = options.shapes;
    const std::string split = spec == "shapes" ? "" : spec.substr(7);
    if (split == "train") {
      shapes.split = ShapesSplit::kTrain;
    } else if (split == "heldout") {
      shapes.split = ShapesSplit::kHeldOut;
    } else if (!split.empty()) {
      throw Error("dataset '" + spec + "': unknown shapes-world split '" + split + "' (train or heldout)");
    }
    return std::make_shared<ShapesWorld>(shapes);
  }
  const std::vector<std::string> shards = expand_shard_spec(spec);
  const bool all_tar = !shards.empty() && std::all_of(shards.begin(), shards.end(), [](const std::string& s) {
    return ends_with(s, ".tar") || ends_with(s, ".tar.gz") || ends_with(s, ".tgz");
  });
  if (all_tar) return std::make_shared<TarDataset>(std::vector<std::filesystem::path>(shards.begin(), shards.end()));
  if (std::filesystem::is_directory(spec)) return std::make_shared<ImageFolderDataset>(spec, options.folder);
  if (std::filesystem::is_regular_file(spec)) return std::make_shared<CsvDataset>(spec, options.csv);
  throw Error("dataset '" + spec + "' is not \"shapes\", a .tar shard list, an image folder or a manifest file");
}

}  // namespace clipguide::train
