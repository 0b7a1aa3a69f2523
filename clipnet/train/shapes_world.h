// The shapes world: a procedural, infinite, seeded image-caption dataset for training and testing CLIP
// end to end in minutes. One or two flat shapes (7 kinds, 12 colours, 3 sizes, 9 positions) on a plain
// background, antialiased by 4x4 supersampling, with captions from templates with synonyms and varied
// word order. sample(i) is a pure function of (seed, split, i); attributes(i) says what is in it.
// Shapes: S the image side.
#pragma once

#include "clipnet/train/dataset.h"
#include "clipnet/train/random.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace clipguide::train {

// A word of the shapes world: its canonical name (used for evaluation prompts) and the variants
// captions use (name first). Variants never overlap between two words of one kind.
struct ShapesWord {
  std::string name;
  std::vector<std::string> variants;
};

const std::vector<ShapesWord>& shapes_world_kinds();      // circle, square, triangle, star, diamond, hexagon, cross
const std::vector<ShapesWord>& shapes_world_colours();    // red, green, blue, yellow, ... (12)
const std::vector<ShapesWord>& shapes_world_sizes();      // small, medium, large
const std::vector<ShapesWord>& shapes_world_positions();  // 3x3 grid: "top left", "top centre", ... "bottom right"; variants are phrases
// RGB of each colour, in shapes_world_colours() order.
const std::vector<std::array<uint8_t, 3>>& shapes_world_rgb();

// One shape in a picture. Indices refer to the tables above.
struct ShapeAttributes {
  int kind = 0;      // shapes_world_kinds()
  int colour = 0;    // shapes_world_colours()
  int size = 0;      // shapes_world_sizes()
  int position = 0;  // shapes_world_positions(): the grid cell holding the centre
  double cx = 0, cy = 0;  // centre in pixels (x right, y down; pixel (i, j) covers [j, j+1) x [i, i+1))
  double radius = 0;      // circumradius in pixels: the shape lies within this distance of its centre
  std::optional<std::array<float, 3>> shade;  // RGB drawn (0..255) when not the palette colour: a shade of `colour`
};

// Everything a picture shows.
struct ShapesScene {
  std::vector<ShapeAttributes> shapes;  // one or two, not overlapping
  int background = 0;                   // shapes_world_colours(); differs from every shape's colour
  std::optional<std::array<float, 3>> background_shade;  // as ShapeAttributes::shade
};

// Nearest palette colour (shapes_world_rgb(), Euclidean in RGB 0..255) of an RGB triple: the colour a shade
// is named by.
int nearest_shapes_colour(const std::array<float, 3>& rgb);

// Disjoint streams of pictures: the held-out split never reproduces a training picture's random draws.
enum class ShapesSplit { kTrain, kHeldOut };

// What the pictures of a hard-negative group differ in (one per group): the first shape's kind, its colour,
// the background colour, the shape's and background's colours swapped, the shape's size, its position.
enum class ShapesVariation { kKind, kColour, kBackground, kSwap, kSize, kPosition };
// Names as command lines spell them: kind, colour, background, swap, size, position.
const std::vector<std::string>& shapes_variation_names();
// "kind,colour,..." (any order, "all" for every one) -> variations; throws Error naming the bad word.
std::vector<ShapesVariation> parse_shapes_variations(const std::string& list);

// Shapes world settings.
struct ShapesWorldOptions {
  uint64_t seed = 0;                       // the world's seed
  ShapesSplit split = ShapesSplit::kTrain;  // which stream of pictures
  int64_t image_size = 64;                 // S: pictures are (3, S, S)
  int64_t size = -1;                       // samples: -1 infinite, N for a fixed evaluation set
  double two_shape_fraction = 0.3;         // fraction of pictures with two shapes
  int supersample = 4;                     // antialiasing: samples per pixel side
  // Hard negatives for contrastive training: consecutive pictures come in groups of this many that show
  // the same scene except in one thing, drawn per group from `vary` (1: every picture drawn independently).
  // Member m > 0 differs from member 0 in that thing; size, position and swap groups hold one shape only,
  // and members beyond the attribute's count of values also take another kind (so no two are alike). Each
  // member's caption names what its group varies.
  int group = 1;
  std::vector<ShapesVariation> vary = {ShapesVariation::kKind};
  // Fraction of pictures whose background and shapes are drawn in random shades instead of the palette
  // colours: a point within 100 levels (RGB 0..255) of the named colour whose nearest palette colour is still the named
  // one, so a colour word names a region of RGB, not one point (without them the model has never seen, and
  // cannot rank, the dark or washed-out reds that guidance drifts into).
  double shade_fraction = 0;
};

class ShapesWorld : public Dataset {
 public:
  explicit ShapesWorld(ShapesWorldOptions options = {});
  int64_t size() const override { return options_.size; }
  bool indexable() const override { return true; }
  Sample get(int64_t index) const override;
  std::string describe() const override;

  // Picture `index` with its caption: get(index), a pure function of (seed, split, index).
  Sample sample(int64_t index) const { return get(index); }
  // What picture `index` shows (cheap: no rendering).
  ShapesScene attributes(int64_t index) const;
  // (3, S, S) uint8 picture of a scene.
  at::Tensor render(const ShapesScene& scene) const;
  // The caption of picture `index` (templates and synonyms drawn from its own random stream; in a group,
  // a template that names what the group varies).
  std::string caption(int64_t index) const;
  // What picture `index`'s group varies (std::nullopt when group is 1).
  std::optional<ShapesVariation> variation(int64_t index) const;

  const ShapesWorldOptions& options() const { return options_; }

  // Canonical text for zero-shot evaluation: "a large red circle at the top left" with the fields not
  // wanted left out (e.g. only kind and colour: "a red circle").
  static std::string prompt(const ShapeAttributes& shape, bool with_size = true, bool with_position = true);
  // Canonical text naming every attribute of a single-shape scene: "a large red circle at the top left on a
  // blue background"; `form` 0 is that order, 1 "a blue background with a large red circle at the top left".
  static std::string full_prompt(const ShapesScene& scene, int form = 0);

 private:
  ShapesScene draw_scene(uint64_t seed) const;
  // Changes `scene` (a group's scene) into member `member` of a group varying `what`, drawing from `rng`.
  void vary_member(ShapesScene& scene, ShapesVariation what, int64_t member, Rng& rng) const;
  // With options_.shade_fraction: draws the scene's shades from streams keyed by `key` (a picture or group).
  void shade(ShapesScene& scene, uint64_t key) const;

  ShapesWorldOptions options_;
};

}  // namespace clipguide::train
