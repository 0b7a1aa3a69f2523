// One string names a training set (what clip-train's --train-data takes): a CSV/TSV manifest, WebDataset
// tar shards (brace-expanded, comma or "::" lists), a folder of captioned images, or the shapes world.
#pragma once

#include "clipnet/train/dataset.h"
#include "clipnet/train/shapes_world.h"

#include <memory>
#include <string>

namespace clipguide::train {

// Settings for the kinds of source open_dataset can return.
struct OpenDatasetOptions {
  CsvOptions csv;             // manifests (.csv, .tsv): columns and separator (tab by default, as open_clip)
  ImageFolderOptions folder;  // image folders
  ShapesWorldOptions shapes;  // "shapes", "shapes:train" or "shapes:heldout" (the split overrides shapes.split)
};

// "shapes[:train|:heldout]" → ShapesWorld; a spec ending in .tar/.tar.gz/.tgz (after brace expansion) →
// TarDataset; an existing folder → ImageFolderDataset; any other existing file → CsvDataset.
// Throws Error naming the spec when it is none of these.
std::shared_ptr<Dataset> open_dataset(const std::string& spec, const OpenDatasetOptions& options = {});

}  // namespace clipguide::train
