// The shapes world (shapes_world.h): scene sampling, supersampled rasterisation of inside-tests, and
// caption templates. All randomness comes from Rng streams keyed by (seed, split, index, purpose).
#include "clipnet/train/shapes_world.h"

#include "clipnet/train/random.h"
#include "core/error.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <functional>

namespace clipguide::train {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Streams drawn from per picture.
enum Purpose : uint64_t { kScene = 1, kCaption = 2, kGroup = 3, kShade = 4 };

// How far (RGB levels, 0..255) a shade may lie from its palette colour.
constexpr double kShadeRadius = 100;

// Grid cell centres (fraction of S) and radii (fraction of S): a large shape in a corner cell still fits.
constexpr double kCellCentre[3] = {0.2, 0.5, 0.8};
constexpr double kRadius[3] = {0.08, 0.12, 0.17};
constexpr double kJitter = 0.02;

struct Point {
  double x, y;
};

// Regular or star polygon with `n` points on the unit circle, the first at the top (y down), and inner
// radius `inner` between them (1 for a plain polygon).
std::vector<Point> polygon(int n, double inner) {
  std::vector<Point> v;
  const int steps = inner < 1 ? 2 * n : n;
  for (int k = 0; k < steps; ++k) {
    const double a = -kPi / 2 + 2 * kPi * k / steps;
    const double r = (inner < 1 && k % 2 == 1) ? inner : 1.0;
    v.push_back({r * std::cos(a), r * std::sin(a)});
  }
  return v;
}

// Crossing-number test (works for the non-convex star).
bool in_polygon(const std::vector<Point>& v, double x, double y) {
  bool inside = false;
  for (size_t i = 0, j = v.size() - 1; i < v.size(); j = i++) {
    if ((v[i].y > y) != (v[j].y > y) && x < (v[j].x - v[i].x) * (y - v[i].y) / (v[j].y - v[i].y) + v[i].x) {
      inside = !inside;
    }
  }
  return inside;
}

// Is (u, v), in units of the radius from the centre, inside shape `kind`? Every shape contains the disc
// of radius 0.3 around its centre (the centre pixel is pure colour) and lies within the unit disc.
bool inside(int kind, double u, double v) {
  static const std::vector<Point> triangle = polygon(3, 1), star = polygon(5, 0.45), hexagon = polygon(6, 1);
  switch (kind) {
    case 0: return u * u + v * v <= 1;                               // circle
    case 1: return std::max(std::abs(u), std::abs(v)) <= 0.7;        // square (diagonal 0.99)
    case 2: return in_polygon(triangle, u, v);                       // triangle, apex up
    case 3: return in_polygon(star, u, v);                           // five-pointed star
    case 4: return std::abs(u) + std::abs(v) <= 1;                   // diamond
    case 5: return in_polygon(hexagon, u, v);                        // hexagon, vertex up
    case 6: return (std::abs(u) <= 0.3 && std::abs(v) <= 0.95) || (std::abs(v) <= 0.3 && std::abs(u) <= 0.95);  // cross
  }
  return false;
}

// Distance from (u, v) to the boundary of polygon `v` (exact).
double polygon_boundary_distance(const std::vector<Point>& poly, double x, double y) {
  double best = 1e30;
  for (size_t i = 0, j = poly.size() - 1; i < poly.size(); j = i++) {
    const double ex = poly[i].x - poly[j].x, ey = poly[i].y - poly[j].y;
    const double t = std::clamp(((x - poly[j].x) * ex + (y - poly[j].y) * ey) / (ex * ex + ey * ey), 0.0, 1.0);
    best = std::min(best, std::hypot(x - poly[j].x - t * ex, y - poly[j].y - t * ey));
  }
  return best;
}

// Distance from (u, v) to the boundary of an axis-aligned box of half-sizes (bx, by) (exact).
double box_boundary_distance(double u, double v, double bx, double by) {
  const double qx = std::abs(u) - bx, qy = std::abs(v) - by;
  if (qx <= 0 && qy <= 0) return -std::max(qx, qy);
  return std::hypot(std::max(qx, 0.0), std::max(qy, 0.0));
}

// A lower bound on the distance from (u, v) to the boundary of shape `kind` (units of the radius): a
// pixel whose centre is further than half its diagonal lies wholly inside or outside.
double boundary_distance(int kind, double u, double v) {
  static const std::vector<Point> triangle = polygon(3, 1), star = polygon(5, 0.45), hexagon = polygon(6, 1);
  switch (kind) {
    case 0: return std::abs(std::hypot(u, v) - 1);
    case 1: return box_boundary_distance(u, v, 0.7, 0.7);
    case 2: return polygon_boundary_distance(triangle, u, v);
    case 3: return polygon_boundary_distance(star, u, v);
    case 4: return std::abs(std::abs(u) + std::abs(v) - 1) / std::sqrt(2.0);
    case 5: return polygon_boundary_distance(hexagon, u, v);
    case 6: return std::min(box_boundary_distance(u, v, 0.3, 0.95), box_boundary_distance(u, v, 0.95, 0.3));
  }
  return 0;
}

template <typename T>
const T& pick(Rng& rng, const std::vector<T>& v) {
  return v[static_cast<size_t>(rng.below(static_cast<int64_t>(v.size())))];
}

// The canonical name most of the time, a variant otherwise (so both are learnt).
const std::string& word(Rng& rng, const ShapesWord& w) { return rng.chance(0.6) ? w.variants[0] : pick(rng, w.variants); }

std::string with_article(const std::string& phrase) {
  const char c = phrase.empty() ? 'x' : phrase[0];
  return (std::string("aeiou").find(c) != std::string::npos ? "an " : "a ") + phrase;
}

}  // namespace

const std::vector<ShapesWord>& shapes_world_kinds() {
  static const std::vector<ShapesWord> k = {
      {"circle", {"circle", "disc", "round dot"}},
      {"square", {"square", "box"}},
      {"triangle", {"triangle"}},
      {"star", {"star", "five-pointed star"}},
      {"diamond", {"diamond", "rhombus"}},
      {"hexagon", {"hexagon", "six-sided polygon"}},
      {"cross", {"cross", "plus sign"}},
  };
  return k;
}

const std::vector<ShapesWord>& shapes_world_colours() {
  static const std::vector<ShapesWord> c = {
      {"red", {"red", "crimson", "scarlet"}},  {"green", {"green", "emerald"}},  {"blue", {"blue", "cobalt"}},
      {"yellow", {"yellow", "golden"}},        {"purple", {"purple", "violet"}}, {"orange", {"orange", "tangerine"}},
      {"pink", {"pink", "rose"}},              {"cyan", {"cyan", "turquoise"}},  {"white", {"white", "snow-white"}},
      {"black", {"black", "jet-black"}},       {"grey", {"grey", "gray"}},       {"brown", {"brown", "chocolate"}},
  };
  return c;
}

const std::vector<std::array<uint8_t, 3>>& shapes_world_rgb() {
  static const std::vector<std::array<uint8_t, 3>> rgb = {
      {220, 30, 30},  {30, 170, 50},  {30, 60, 220},   {240, 220, 30}, {140, 40, 180}, {245, 140, 20},
      {250, 130, 190}, {30, 210, 220}, {245, 245, 245}, {20, 20, 20},   {128, 128, 128}, {130, 80, 40},
  };
  return rgb;
}

const std::vector<ShapesWord>& shapes_world_sizes() {
  static const std::vector<ShapesWord> s = {
      {"small", {"small", "little", "tiny"}},
      {"medium", {"medium", "medium-sized", "mid-sized"}},
      {"large", {"large", "big"}},
  };
  return s;
}

const std::vector<ShapesWord>& shapes_world_positions() {
  // Row-major 3x3 grid; cell = 3 * row + column. No phrase contains another's ("at the top" would be
  // inside "at the top left"), so captions can be checked by substring.
  static const std::vector<ShapesWord> p = {
      {"top left", {"at the top left", "in the top left corner", "in the upper left"}},
      {"top centre", {"at the top centre", "at the top center", "at the top middle"}},
      {"top right", {"at the top right", "in the top right corner", "in the upper right"}},
      {"left", {"on the left", "at the left side"}},
      {"centre", {"in the centre", "in the center", "in the middle"}},
      {"right", {"on the right", "at the right side"}},
      {"bottom left", {"at the bottom left", "in the bottom left corner", "in the lower left"}},
      {"bottom centre", {"at the bottom centre", "at the bottom center", "at the bottom middle"}},
      {"bottom right", {"at the bottom right", "in the bottom right corner", "in the lower right"}},
  };
  return p;
}

ShapesWorld::ShapesWorld(ShapesWorldOptions options) : options_(options) {
  if (options_.image_size < 8) throw Error("ShapesWorld: image_size " + std::to_string(options_.image_size) + " is below 8");
  if (options_.supersample < 1) throw Error("ShapesWorld: supersample must be at least 1");
  if (options_.group < 1) throw Error("ShapesWorld: group must be at least 1");
  if (options_.group > 1 && options_.vary.empty()) throw Error("ShapesWorld: a group needs at least one variation");
  if (options_.size < -1) throw Error("ShapesWorld: size must be -1 (infinite) or a sample count");
  if (!(options_.shade_fraction >= 0 && options_.shade_fraction <= 1))
    throw Error("ShapesWorld: shade fraction " + std::to_string(options_.shade_fraction) + " is not within [0, 1]");
}

ShapesScene ShapesWorld::attributes(int64_t index) const {
  if (index < 0 || (options_.size >= 0 && index >= options_.size)) {
    throw Error(describe() + ": index " + std::to_string(index) + " out of range");
  }
  if (options_.group <= 1) {
    const uint64_t key = mix_seed({options_.seed, static_cast<uint64_t>(options_.split), static_cast<uint64_t>(index), kScene});
    ShapesScene scene = draw_scene(key);
    shade(scene, key);
    return scene;
  }
  // A group of consecutive pictures: one scene, member `member` changed in what the group varies.
  const int64_t group = index / options_.group, member = index % options_.group;
  const uint64_t key = mix_seed({options_.seed, static_cast<uint64_t>(options_.split), static_cast<uint64_t>(group), kGroup});
  ShapesScene scene = draw_scene(key);
  Rng rng(key ^ 0x9e3779b97f4a7c15ULL);
  const ShapesVariation what = options_.vary[static_cast<size_t>(rng.below(static_cast<int64_t>(options_.vary.size())))];
  if (what == ShapesVariation::kSize || what == ShapesVariation::kPosition || what == ShapesVariation::kSwap) {
    scene.shapes.resize(1);
  }
  vary_member(scene, what, member, rng);
  shade(scene, key);  // keyed by the group: its members show a colour in the same shade
  return scene;
}

int nearest_shapes_colour(const std::array<float, 3>& rgb) {
  const auto& palette = shapes_world_rgb();
  int best = 0;
  double best_d = 1e30;
  for (size_t i = 0; i < palette.size(); ++i) {
    double d = 0;
    for (int c = 0; c < 3; ++c) d += (rgb[c] - palette[i][c]) * (rgb[c] - palette[i][c]);
    if (d < best_d) best_d = d, best = static_cast<int>(i);
  }
  return best;
}

void ShapesWorld::shade(ShapesScene& scene, uint64_t key) const {
  if (options_.shade_fraction <= 0) return;
  Rng pick(mix_seed({key, kShade}));
  if (!pick.chance(options_.shade_fraction)) return;
  // A shade of `colour` for `role` (0 the background, k + 1 shape k): uniform in the ball of kShadeRadius
  // around the palette colour, clipped to 0..255, drawn again until its nearest palette colour is `colour`.
  const auto shade_of = [&](int colour, uint64_t role) -> std::optional<std::array<float, 3>> {
    Rng rng(mix_seed({key, kShade, role, static_cast<uint64_t>(colour)}));
    const auto& base = shapes_world_rgb()[static_cast<size_t>(colour)];
    for (int attempt = 0; attempt < 64; ++attempt) {
      std::array<double, 3> d{};
      double norm2 = 0;
      do {
        norm2 = 0;
        for (double& x : d) x = rng.uniform(-1, 1), norm2 += x * x;
      } while (norm2 > 1);
      std::array<float, 3> rgb{};
      for (int c = 0; c < 3; ++c) rgb[c] = static_cast<float>(std::clamp(base[c] + kShadeRadius * d[c], 0.0, 255.0));
      if (nearest_shapes_colour(rgb) == colour) return rgb;
    }
    return std::nullopt;  // the palette colour itself
  };
  scene.background_shade = shade_of(scene.background, 0);
  for (size_t k = 0; k < scene.shapes.size(); ++k) scene.shapes[k].shade = shade_of(scene.shapes[k].colour, k + 1);
}

std::optional<ShapesVariation> ShapesWorld::variation(int64_t index) const {
  if (options_.group <= 1) return std::nullopt;
  const int64_t group = index / options_.group;
  const uint64_t key = mix_seed({options_.seed, static_cast<uint64_t>(options_.split), static_cast<uint64_t>(group), kGroup});
  Rng rng(key ^ 0x9e3779b97f4a7c15ULL);
  return options_.vary[static_cast<size_t>(rng.below(static_cast<int64_t>(options_.vary.size())))];
}

void ShapesWorld::vary_member(ShapesScene& scene, ShapesVariation what, int64_t member, Rng& rng) const {
  const int n_kinds = static_cast<int>(shapes_world_kinds().size());
  const int n_colours = static_cast<int>(shapes_world_colours().size());
  const double s = static_cast<double>(options_.image_size);
  ShapeAttributes& first = scene.shapes[0];
  // The values the varied attribute may take, shuffled with the group's stream: member m takes the m-th.
  auto shuffled = [&](std::vector<int> values) {
    for (size_t k = values.size() - 1; k > 0; --k) std::swap(values[k], values[static_cast<size_t>(rng.below(static_cast<int64_t>(k) + 1))]);
    return values;
  };
  auto all_but = [](int n, const std::vector<int>& excluded) {
    std::vector<int> v;
    for (int k = 0; k < n; ++k)
      if (std::find(excluded.begin(), excluded.end(), k) == excluded.end()) v.push_back(k);
    return v;
  };
  int64_t distinct = 0;  // how many members the variation alone keeps apart
  switch (what) {
    case ShapesVariation::kKind: {
      const std::vector<int> kinds = shuffled(all_but(n_kinds, {}));
      distinct = static_cast<int64_t>(kinds.size());
      first.kind = kinds[static_cast<size_t>(member % distinct)];
      break;
    }
    case ShapesVariation::kColour: {
      std::vector<int> taken{scene.background};
      const std::vector<int> colours = shuffled(all_but(n_colours, taken));
      distinct = static_cast<int64_t>(colours.size());
      first.colour = colours[static_cast<size_t>(member % distinct)];
      break;
    }
    case ShapesVariation::kBackground: {
      std::vector<int> taken;
      for (const auto& a : scene.shapes) taken.push_back(a.colour);
      const std::vector<int> colours = shuffled(all_but(n_colours, taken));
      distinct = static_cast<int64_t>(colours.size());
      scene.background = colours[static_cast<size_t>(member % distinct)];
      break;
    }
    case ShapesVariation::kSwap: {
      // Pairs of members: (shape, background) colours, then the same two swapped; each pair other colours.
      const std::vector<int> colours = shuffled(all_but(n_colours, {first.colour, scene.background}));
      distinct = 2 * (1 + static_cast<int64_t>(colours.size()) / 2);
      const int64_t pair = (member % distinct) / 2;
      int shape = first.colour, background = scene.background;
      if (pair > 0) shape = colours[static_cast<size_t>(2 * pair - 2)], background = colours[static_cast<size_t>(2 * pair - 1)];
      if (member % 2 == 1) std::swap(shape, background);
      first.colour = shape, scene.background = background;
      break;
    }
    case ShapesVariation::kSize: {
      const std::vector<int> sizes = shuffled(all_but(3, {}));
      distinct = 3;
      first.size = sizes[static_cast<size_t>(member % distinct)];
      first.radius = s * kRadius[first.size];
      break;
    }
    case ShapesVariation::kPosition: {
      const std::vector<int> cells = shuffled(all_but(9, {}));
      distinct = 9;
      const double jx = first.cx / s - kCellCentre[first.position % 3], jy = first.cy / s - kCellCentre[first.position / 3];
      first.position = cells[static_cast<size_t>(member % distinct)];
      first.cx = s * (kCellCentre[first.position % 3] + jx);
      first.cy = s * (kCellCentre[first.position / 3] + jy);
      break;
    }
  }
  if (member >= distinct && what != ShapesVariation::kKind) {  // values ran out: another kind keeps it apart
    first.kind = (first.kind + 1 + static_cast<int>((member / distinct - 1) % (n_kinds - 1))) % n_kinds;
  } else if (member >= distinct) {
    const std::vector<int> others = all_but(n_colours, {scene.background, first.colour});
    first.colour = others[static_cast<size_t>((member / distinct - 1) % static_cast<int64_t>(others.size()))];
  }
  if (scene.shapes.size() == 2) {  // keep the two shapes distinct
    ShapeAttributes& second = scene.shapes[1];
    if (second.kind == first.kind && second.colour == first.colour) second.kind = (second.kind + 1) % n_kinds;
  }
}

ShapesScene ShapesWorld::draw_scene(uint64_t seed) const {
  Rng rng(seed);
  const int n_colours = static_cast<int>(shapes_world_colours().size());
  const double s = static_cast<double>(options_.image_size);
  ShapesScene scene;
  scene.background = static_cast<int>(rng.below(n_colours));
  const int count = rng.chance(options_.two_shape_fraction) ? 2 : 1;
  for (int k = 0; k < count; ++k) {
    ShapeAttributes a;
    for (int attempt = 0;; ++attempt) {
      a.kind = static_cast<int>(rng.below(static_cast<int64_t>(shapes_world_kinds().size())));
      do a.colour = static_cast<int>(rng.below(n_colours));
      while (a.colour == scene.background);
      a.size = static_cast<int>(rng.below(3));
      a.position = static_cast<int>(rng.below(9));
      a.cx = s * (kCellCentre[a.position % 3] + rng.uniform(-kJitter, kJitter));
      a.cy = s * (kCellCentre[a.position / 3] + rng.uniform(-kJitter, kJitter));
      a.radius = s * kRadius[a.size];
      if (k == 0) break;
      // A second shape: another cell, another look, and a gap of at least 2 pixels.
      const ShapeAttributes& first = scene.shapes[0];
      const bool distinct = a.position != first.position && (a.kind != first.kind || a.colour != first.colour);
      const double gap = std::hypot(a.cx - first.cx, a.cy - first.cy) - a.radius - first.radius;
      if (distinct && gap >= 2.0) break;
      if (attempt >= 64) {  // always possible: small shapes in opposite corners
        a.size = 0;
        a.radius = s * kRadius[0];
        a.position = 8 - first.position == first.position ? 0 : 8 - first.position;
        a.cx = s * kCellCentre[a.position % 3];
        a.cy = s * kCellCentre[a.position / 3];
        if (a.kind == first.kind && a.colour == first.colour) a.kind = (a.kind + 1) % 7;
        break;
      }
    }
    scene.shapes.push_back(a);
  }
  return scene;
}

at::Tensor ShapesWorld::render(const ShapesScene& scene) const {
  const int64_t s = options_.image_size;
  const int ss = options_.supersample;
  const auto& rgb = shapes_world_rgb();
  std::vector<float> canvas(static_cast<size_t>(3 * s * s));  // (3, S, S) in [0, 255]
  for (int c = 0; c < 3; ++c) {
    const float value = scene.background_shade ? (*scene.background_shade)[c] : static_cast<float>(rgb[scene.background][c]);
    std::fill(canvas.begin() + c * s * s, canvas.begin() + (c + 1) * s * s, value);
  }
  for (const ShapeAttributes& a : scene.shapes) {
    // Coverage of each pixel in the shape's bounding box, from ss x ss point samples.
    const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(a.cx - a.radius)) - 1);
    const int64_t x1 = std::min<int64_t>(s - 1, static_cast<int64_t>(std::ceil(a.cx + a.radius)) + 1);
    const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(a.cy - a.radius)) - 1);
    const int64_t y1 = std::min<int64_t>(s - 1, static_cast<int64_t>(std::ceil(a.cy + a.radius)) + 1);
    for (int64_t i = y0; i <= y1; ++i) {
      for (int64_t j = x0; j <= x1; ++j) {
        // Pixels far from the edge are all in or all out: one test instead of ss * ss.
        const double pu = (static_cast<double>(j) + 0.5 - a.cx) / a.radius;
        const double pv = (static_cast<double>(i) + 0.5 - a.cy) / a.radius;
        int hits = 0;
        const bool uniform = boundary_distance(a.kind, pu, pv) * a.radius > 0.75;
        if (uniform) hits = inside(a.kind, pu, pv) ? ss * ss : 0;
        for (int si = 0; si < ss && !uniform; ++si) {
          const double v = (static_cast<double>(i) + (si + 0.5) / ss - a.cy) / a.radius;
          for (int sj = 0; sj < ss; ++sj) {
            const double u = (static_cast<double>(j) + (sj + 0.5) / ss - a.cx) / a.radius;
            hits += inside(a.kind, u, v);
          }
        }
        if (hits == 0) continue;
        const float cover = static_cast<float>(hits) / static_cast<float>(ss * ss);
        for (int c = 0; c < 3; ++c) {
          float& p = canvas[static_cast<size_t>(c * s * s + i * s + j)];
          p = p * (1 - cover) + (a.shade ? (*a.shade)[c] : static_cast<float>(rgb[a.colour][c])) * cover;
        }
      }
    }
  }
  at::Tensor image = at::empty({3, s, s}, at::kByte);  // (3, S, S)
  uint8_t* out = image.data_ptr<uint8_t>();
  for (size_t k = 0; k < canvas.size(); ++k) out[k] = static_cast<uint8_t>(std::lround(canvas[k]));
  return image;
}

std::string ShapesWorld::caption(int64_t index) const {
  const ShapesScene scene = attributes(index);
  Rng rng(mix_seed({options_.seed, static_cast<uint64_t>(options_.split), static_cast<uint64_t>(index), kCaption}));
  const auto& kinds = shapes_world_kinds();
  const auto& colours = shapes_world_colours();
  const auto& sizes = shapes_world_sizes();
  const auto& positions = shapes_world_positions();
  const std::string bg = word(rng, colours[scene.background]);

  // Phrases for one shape, each drawn once so a caption uses one variant per attribute.
  struct Words {
    std::string kind, colour, size, position;
  };
  std::vector<Words> w;
  for (const auto& a : scene.shapes) {
    w.push_back({word(rng, kinds[a.kind]), word(rng, colours[a.colour]), word(rng, sizes[a.size]),
                 word(rng, positions[a.position])});
  }
  // Every template names each shape's kind and colour; the masks say what else it names.
  enum Names : unsigned { kNamesSize = 1, kNamesPosition = 2, kNamesBackground = 4 };
  unsigned needed = 0;  // what the group varies must be in the caption
  if (const auto v = variation(index)) {
    if (*v == ShapesVariation::kSize) needed = kNamesSize;
    if (*v == ShapesVariation::kPosition) needed = kNamesPosition;
    if (*v == ShapesVariation::kBackground || *v == ShapesVariation::kSwap) needed = kNamesBackground;
  }
  struct Template {
    unsigned names;
    std::function<std::string()> text;
  };
  std::vector<Template> templates;
  if (scene.shapes.size() == 1) {
    const Words& a = w[0];
    templates = {
        {kNamesSize | kNamesBackground, [&] { return with_article(a.size + " " + a.colour + " " + a.kind) + " on " + with_article(bg) + " background"; }},
        {kNamesSize | kNamesPosition, [&] { return with_article(a.size + " " + a.colour + " " + a.kind) + " " + a.position; }},
        {kNamesBackground, [&] { return a.colour + " " + a.kind + ", " + bg + " background"; }},
        {kNamesSize, [&] { return "a picture of " + with_article(a.size + " " + a.colour + " " + a.kind); }},
        {kNamesPosition | kNamesBackground, [&] { return with_article(a.colour + " " + a.kind) + " " + a.position + " on " + with_article(bg) + " background"; }},
        {kNamesSize | kNamesPosition | kNamesBackground, [&] { return with_article(bg) + " background with " + with_article(a.size + " " + a.colour + " " + a.kind) + " " + a.position; }},
        {kNamesPosition, [&] { return a.position + " there is " + with_article(a.colour + " " + a.kind); }},
        {0, [&] { return "a photo of " + with_article(a.colour + " " + a.kind); }},
        {kNamesSize | kNamesPosition, [&] { return a.size + " " + a.kind + " in " + a.colour + ", " + a.position; }},
        {0, [&] { return with_article(a.colour + " " + a.kind); }},
        {kNamesBackground, [&] { return with_article(a.colour + " " + a.kind) + " on " + with_article(bg) + " background"; }},
    };
  } else {
    const Words &a = w[0], &b = w[1];
    templates = {
        {kNamesBackground, [&] { return with_article(a.colour + " " + a.kind) + " and " + with_article(b.colour + " " + b.kind) + " on " + with_article(bg) + " background"; }},
        {kNamesSize | kNamesPosition, [&] { return with_article(a.size + " " + a.colour + " " + a.kind) + " " + a.position + " and " + with_article(b.size + " " + b.colour + " " + b.kind) + " " + b.position; }},
        {0, [&] { return "two shapes: " + with_article(a.colour + " " + a.kind) + " and " + with_article(b.colour + " " + b.kind); }},
        {kNamesPosition | kNamesBackground, [&] { return with_article(b.colour + " " + b.kind) + " " + b.position + " and " + with_article(a.colour + " " + a.kind) + " " + a.position + ", " + bg + " background"; }},
    };
  }
  std::vector<const Template*> allowed;
  for (const auto& t : templates)
    if ((t.names & needed) == needed) allowed.push_back(&t);
  return allowed[static_cast<size_t>(rng.below(static_cast<int64_t>(allowed.size())))]->text();
}

Sample ShapesWorld::get(int64_t index) const {
  const ShapesScene scene = attributes(index);
  return {render(scene), caption(index),
          std::string("shapes/") + (options_.split == ShapesSplit::kTrain ? "train/" : "heldout/") + std::to_string(index)};
}

std::string ShapesWorld::describe() const {
  return std::string("shapes world (seed ") + std::to_string(options_.seed) + ", " +
         (options_.split == ShapesSplit::kTrain ? "train" : "held-out") + ", " +
         (options_.size < 0 ? std::string("infinite") : std::to_string(options_.size) + " samples") + ")";
}

const std::vector<std::string>& shapes_variation_names() {
  static const std::vector<std::string> names = {"kind", "colour", "background", "swap", "size", "position"};
  return names;
}

std::vector<ShapesVariation> parse_shapes_variations(const std::string& list) {
  const auto& names = shapes_variation_names();
  std::vector<ShapesVariation> out;
  size_t begin = 0;
  while (begin <= list.size()) {
    const size_t comma = std::min(list.find(',', begin), list.size());
    const std::string item = list.substr(begin, comma - begin);
    if (item == "all") {
      for (size_t k = 0; k < names.size(); ++k) out.push_back(static_cast<ShapesVariation>(k));
    } else {
      const auto it = std::find(names.begin(), names.end(), item == "color" ? "colour" : item);
      if (it == names.end()) {
        throw Error("shapes variation '" + item + "' in '" + list + "' is not one of kind, colour, background, swap, size, position, all");
      }
      out.push_back(static_cast<ShapesVariation>(it - names.begin()));
    }
    begin = comma + 1;
  }
  return out;
}

std::string ShapesWorld::full_prompt(const ShapesScene& scene, int form) {
  const ShapeAttributes& a = scene.shapes.at(0);
  const std::string shape = with_article(shapes_world_sizes()[a.size].name + " " + shapes_world_colours()[a.colour].name +
                                         " " + shapes_world_kinds()[a.kind].name) +
                            " " + shapes_world_positions()[a.position].variants[0];
  const std::string& bg = shapes_world_colours()[scene.background].name;
  if (form == 1) return with_article(bg) + " background with " + shape;
  return shape + " on " + with_article(bg) + " background";
}

std::string ShapesWorld::prompt(const ShapeAttributes& shape, bool with_size, bool with_position) {
  std::string text = shapes_world_colours()[shape.colour].name + " " + shapes_world_kinds()[shape.kind].name;
  if (with_size) text = shapes_world_sizes()[shape.size].name + " " + text;
  text = with_article(text);
  if (with_position) text += " " + shapes_world_positions()[shape.position].variants[0];
  return text;
}

}  // namespace clipguide::train
