// Tests for clipnet/train/shapes_world: determinism in (seed, split, index), pictures that show what
// the attributes say (colour at each shape's centre, background where no shape is), captions that
// name the right words, and disjoint train / held-out streams.
#include "clipnet/train/shapes_world.h"

#include "core/error.h"
#include "test_util.h"

#include <set>

namespace clipguide::train {
namespace {

bool mentions_any(const std::string& caption, const ShapesWord& word) {
  for (const auto& v : word.variants) {
    if (caption.find(v) != std::string::npos) return true;
  }
  return false;
}

std::array<uint8_t, 3> pixel(const at::Tensor& image, int64_t y, int64_t x) {
  auto p = image.index({at::indexing::Slice(), y, x});
  return {p[0].item<uint8_t>(), p[1].item<uint8_t>(), p[2].item<uint8_t>()};
}

TEST(ShapesWorld, VocabularyIsLargeEnoughAndUnambiguous) {
  EXPECT_GE(shapes_world_kinds().size(), 5u);
  EXPECT_GE(shapes_world_colours().size(), 8u);
  EXPECT_EQ(shapes_world_sizes().size(), 3u);
  EXPECT_GE(shapes_world_positions().size(), 5u);
  EXPECT_EQ(shapes_world_rgb().size(), shapes_world_colours().size());
  // No variant of one word is a variant of another word of the same kind.
  for (const auto* table : {&shapes_world_kinds(), &shapes_world_colours(), &shapes_world_sizes(), &shapes_world_positions()}) {
    std::set<std::string> seen;
    for (const auto& w : *table) {
      EXPECT_EQ(w.variants.front(), table == &shapes_world_positions() ? w.variants.front() : w.name);
      for (const auto& v : w.variants) EXPECT_TRUE(seen.insert(v).second) << "'" << v << "' used twice";
    }
    // Nor is any inside a variant of another word ("at the top" in "at the top left"), as whole words.
    for (const auto& a : *table) {
      for (const auto& b : *table) {
        if (&a == &b) continue;
        for (const auto& va : a.variants) {
          for (const auto& vb : b.variants) {
            EXPECT_EQ((" " + vb + " ").find(" " + va + " "), std::string::npos) << "'" << va << "' inside '" << vb << "'";
          }
        }
      }
    }
  }
}

TEST(ShapesWorld, SampleIsAPureFunctionOfSeedAndIndex) {
  ShapesWorld a, b;
  ShapesWorldOptions other_seed;
  other_seed.seed = 7;
  ShapesWorld c(other_seed);
  int differ = 0;
  for (int64_t i : {0, 1, 17, 123456789}) {
    Sample x = a.get(i), y = b.get(i);
    EXPECT_TRUE(x.image.equal(y.image));
    EXPECT_EQ(x.caption, y.caption);
    EXPECT_EQ(x.key, "shapes/train/" + std::to_string(i));
    EXPECT_EQ(x.image.sizes(), (c10::IntArrayRef{3, 64, 64}));
    EXPECT_EQ(x.image.scalar_type(), at::kByte);
    differ += !x.image.equal(c.get(i).image);
  }
  EXPECT_GE(differ, 3);
  // Out of order and repeated calls agree.
  EXPECT_TRUE(a.get(5).image.equal((a.get(99), a.get(5)).image));
}

TEST(ShapesWorld, PixelsMatchAttributes) {
  ShapesWorldOptions options;
  options.image_size = 64;
  ShapesWorld world(options);
  const auto& rgb = shapes_world_rgb();
  int two_shapes = 0, corners_checked = 0;
  std::set<int> kinds, colours, sizes, positions;
  for (int64_t i = 0; i < 300; ++i) {
    ShapesScene scene = world.attributes(i);
    at::Tensor image = world.get(i).image;
    ASSERT_GE(scene.shapes.size(), 1u);
    two_shapes += scene.shapes.size() == 2;
    for (const auto& s : scene.shapes) {
      kinds.insert(s.kind), colours.insert(s.colour), sizes.insert(s.size), positions.insert(s.position);
      EXPECT_NE(s.colour, scene.background);
      // The pixel holding the centre is fully covered: exactly the named colour.
      EXPECT_EQ(pixel(image, static_cast<int64_t>(s.cy), static_cast<int64_t>(s.cx)), rgb[s.colour])
          << "sample " << i << ": " << ShapesWorld::prompt(s);
      // The centre lies in the named cell of the 3x3 grid.
      EXPECT_EQ(static_cast<int>(s.cx / 64 * 3) + 3 * static_cast<int>(s.cy / 64 * 3), s.position);
      EXPECT_GE(s.cx - s.radius, 0.0);
      EXPECT_LE(s.cx + s.radius, 64.0);
    }
    // A corner pixel no shape reaches is the background colour.
    for (auto [y, x] : {std::pair<int64_t, int64_t>{0, 0}, {0, 63}, {63, 0}, {63, 63}}) {
      bool clear = true;
      for (const auto& s : scene.shapes) clear &= std::hypot(x + 0.5 - s.cx, y + 0.5 - s.cy) > s.radius + 1.5;
      if (!clear) continue;
      ++corners_checked;
      EXPECT_EQ(pixel(image, y, x), rgb[scene.background]) << "sample " << i << " corner " << y << "," << x;
    }
    if (scene.shapes.size() == 2) {
      const auto &p = scene.shapes[0], &q = scene.shapes[1];
      EXPECT_GE(std::hypot(p.cx - q.cx, p.cy - q.cy), p.radius + q.radius);
    }
  }
  EXPECT_GT(two_shapes, 40);
  EXPECT_GT(corners_checked, 600);
  EXPECT_EQ(kinds.size(), shapes_world_kinds().size());
  EXPECT_EQ(colours.size(), shapes_world_colours().size());
  EXPECT_EQ(sizes.size(), 3u);
  EXPECT_EQ(positions.size(), 9u);
}

TEST(ShapesWorld, EdgesAreAntialiased) {
  ShapesWorld world;
  // Some pixel is a strict blend of shape and background (neither colour), i.e. coverage in (0, 1).
  int blended = 0;
  for (int64_t i = 0; i < 20; ++i) {
    ShapesScene scene = world.attributes(i);
    at::Tensor image = world.get(i).image.to(at::kInt);  // (3, S, S)
    auto bg = at::tensor(std::vector<int>(shapes_world_rgb()[scene.background].begin(), shapes_world_rgb()[scene.background].end())).view({3, 1, 1});
    auto fg = at::tensor(std::vector<int>(shapes_world_rgb()[scene.shapes[0].colour].begin(), shapes_world_rgb()[scene.shapes[0].colour].end())).view({3, 1, 1});
    auto neither = image.ne(bg).any(0).logical_and(image.ne(fg).any(0));
    blended += scene.shapes.size() == 1 && neither.any().item<bool>();
  }
  EXPECT_GE(blended, 10);
}

TEST(ShapesWorld, CaptionsNameTheAttributes) {
  ShapesWorld world;
  std::set<std::string> distinct;
  int with_background = 0, with_size = 0, with_position = 0;
  for (int64_t i = 0; i < 500; ++i) {
    ShapesScene scene = world.attributes(i);
    const std::string caption = world.get(i).caption;
    distinct.insert(caption);
    for (const auto& s : scene.shapes) {
      EXPECT_TRUE(mentions_any(caption, shapes_world_kinds()[s.kind])) << caption;
      EXPECT_TRUE(mentions_any(caption, shapes_world_colours()[s.colour])) << caption;
    }
    const auto& s = scene.shapes[0];
    with_background += caption.find("background") != std::string::npos &&
                       mentions_any(caption, shapes_world_colours()[scene.background]);
    with_size += mentions_any(caption, shapes_world_sizes()[s.size]);
    with_position += mentions_any(caption, shapes_world_positions()[s.position]);
    // No caption names a colour that is not in the picture.
    for (size_t c = 0; c < shapes_world_colours().size(); ++c) {
      bool present = static_cast<int>(c) == scene.background;
      for (const auto& t : scene.shapes) present |= t.colour == static_cast<int>(c);
      if (present) continue;
      for (const auto& v : shapes_world_colours()[c].variants) {
        // "red" inside "tangerine"-like words cannot happen with this vocabulary; check whole words.
        const std::string padded = " " + caption + " ";
        EXPECT_EQ(padded.find(" " + v + " "), std::string::npos) << caption << " names '" << v << "'";
      }
    }
  }
  EXPECT_GT(distinct.size(), 400u);
  EXPECT_GT(with_background, 100);
  EXPECT_GT(with_size, 100);
  EXPECT_GT(with_position, 100);
  EXPECT_EQ(ShapesWorld::prompt(world.attributes(0).shapes[0], false, false).rfind("a", 0), 0u);
}

TEST(ShapesWorld, HeldOutSplitIsADifferentStream) {
  ShapesWorldOptions held;
  held.split = ShapesSplit::kHeldOut;
  held.size = 100;
  ShapesWorld train, heldout(held);
  EXPECT_EQ(heldout.size(), 100);
  std::set<std::string> train_images;
  for (int64_t i = 0; i < 100; ++i) {
    auto t = train.get(i).image;
    train_images.insert(std::string(static_cast<const char*>(t.data_ptr()), t.numel()));
  }
  int same = 0;
  for (int64_t i = 0; i < 100; ++i) {
    auto h = heldout.get(i);
    EXPECT_EQ(h.key, "shapes/heldout/" + std::to_string(i));
    same += train_images.count(std::string(static_cast<const char*>(h.image.data_ptr()), h.image.numel()));
  }
  EXPECT_EQ(same, 0);
  EXPECT_THROW(heldout.get(100), Error);
}

TEST(ShapesWorld, KindGroupsShareTheSceneExceptTheFirstShapesKind) {
  ShapesWorldOptions o;
  o.group = 4;
  ShapesWorld world(o);
  for (int64_t group = 0; group < 50; ++group) {
    const ShapesScene first = world.attributes(4 * group);
    std::set<int> kinds{first.shapes[0].kind};
    for (int64_t m = 1; m < 4; ++m) {
      const ShapesScene s = world.attributes(4 * group + m);
      ASSERT_EQ(s.shapes.size(), first.shapes.size());
      EXPECT_EQ(s.background, first.background);
      EXPECT_EQ(s.shapes[0].colour, first.shapes[0].colour);
      EXPECT_EQ(s.shapes[0].size, first.shapes[0].size);
      EXPECT_EQ(s.shapes[0].cx, first.shapes[0].cx);
      kinds.insert(s.shapes[0].kind);
      if (s.shapes.size() == 2) {
        EXPECT_FALSE(s.shapes[1].kind == s.shapes[0].kind && s.shapes[1].colour == s.shapes[0].colour);
      }
    }
    EXPECT_EQ(kinds.size(), 4u) << "group " << group;
  }
  // The next group is another scene.
  int differ = 0;
  for (int64_t group = 0; group < 20; ++group) {
    differ += world.attributes(4 * group).background != world.attributes(4 * group + 4).background;
  }
  EXPECT_GT(differ, 10);
  o.group = 0;
  EXPECT_THROW(ShapesWorld{o}, clipguide::Error);
}

// Every variation: the members of a group differ from the first in exactly the varied attribute (or, for
// members beyond that attribute's values, also in kind or colour), no two members are alike, and every
// caption names what the group varies.
TEST(ShapesWorld, HardGroupsDifferInOneAttributeAndCaptionsNameIt) {
  const auto& sizes = shapes_world_sizes();
  const auto& positions = shapes_world_positions();
  const auto& colours = shapes_world_colours();
  for (const ShapesVariation what : parse_shapes_variations("all")) {
    ShapesWorldOptions o;
    o.group = 5;
    o.vary = {what};
    ShapesWorld world(o);
    for (int64_t group = 0; group < 40; ++group) {
      const ShapesScene base = world.attributes(5 * group);
      std::set<std::string> looks;
      for (int64_t m = 0; m < 5; ++m) {
        const int64_t index = 5 * group + m;
        ASSERT_EQ(world.variation(index), what);
        const ShapesScene s = world.attributes(index);
        const ShapeAttributes &a = s.shapes[0], &b = base.shapes[0];
        ASSERT_EQ(s.shapes.size(), base.shapes.size());
        looks.insert(ShapesWorld::full_prompt(s));
        for (const auto& shape : s.shapes) EXPECT_NE(shape.colour, s.background);
        const bool same_kind = a.kind == b.kind, same_colour = a.colour == b.colour, same_bg = s.background == base.background;
        const bool same_size = a.size == b.size, same_position = a.position == b.position;
        switch (what) {
          case ShapesVariation::kKind: EXPECT_TRUE(same_colour && same_bg && same_size && same_position); break;
          case ShapesVariation::kColour: EXPECT_TRUE(same_kind && same_bg && same_size && same_position); break;
          case ShapesVariation::kBackground: EXPECT_TRUE(same_kind && same_colour && same_size && same_position); break;
          case ShapesVariation::kSwap:
            EXPECT_TRUE(same_kind && same_size && same_position);
            if (m == 1) EXPECT_TRUE(a.colour == base.background && s.background == b.colour);
            EXPECT_EQ(s.shapes.size(), 1u);
            break;
          case ShapesVariation::kSize:
            EXPECT_TRUE(same_colour && same_bg && same_position);
            EXPECT_EQ(same_kind, m < 3) << "members beyond the three sizes take another kind";
            EXPECT_EQ(s.shapes.size(), 1u);
            break;
          case ShapesVariation::kPosition:
            EXPECT_TRUE(same_kind && same_colour && same_bg && same_size);
            EXPECT_EQ(s.shapes.size(), 1u);
            break;
        }
        const std::string caption = world.caption(index);
        if (what == ShapesVariation::kSize) EXPECT_TRUE(mentions_any(caption, sizes[a.size])) << caption;
        if (what == ShapesVariation::kPosition) EXPECT_TRUE(mentions_any(caption, positions[a.position])) << caption;
        if (what == ShapesVariation::kBackground || what == ShapesVariation::kSwap)
          EXPECT_TRUE(caption.find("background") != std::string::npos && mentions_any(caption, colours[s.background])) << caption;
      }
      EXPECT_EQ(looks.size(), 5u) << "group " << group << " of variation " << static_cast<int>(what);
    }
  }
}

TEST(ShapesWorld, VariationListsParseOrNameTheBadWord) {
  EXPECT_EQ(parse_shapes_variations("kind"), std::vector<ShapesVariation>{ShapesVariation::kKind});
  EXPECT_EQ(parse_shapes_variations("swap,color").size(), 2u);
  EXPECT_EQ(parse_shapes_variations("all").size(), shapes_variation_names().size());
  EXPECT_NE(test::error_of([] { parse_shapes_variations("kind,shade"); }).find("'shade'"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_shapes_variations(""); }).find("''"), std::string::npos);
  ShapesWorldOptions o;
  o.group = 2;
  o.vary = {};
  EXPECT_THROW(ShapesWorld{o}, clipguide::Error);
}

TEST(ShapesWorld, ShadesStayInTheirColoursRegionAndGroupsShareThem) {
  ShapesWorldOptions o;
  o.shade_fraction = 1.0;
  o.group = 4;
  o.vary = parse_shapes_variations("kind");
  const ShapesWorld world(o);
  int shaded = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const ShapesScene scene = world.attributes(i);
    if (scene.background_shade) {
      ++shaded;
      EXPECT_EQ(nearest_shapes_colour(*scene.background_shade), scene.background) << "picture " << i;
      // Drawn as the shade, not the palette colour (the corner pixel is background).
      const at::Tensor image = world.render(scene);
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(image[c][0][0].item<int>(), static_cast<int>(std::lround((*scene.background_shade)[c])));
    }
    for (const auto& a : scene.shapes)
      if (a.shade) EXPECT_EQ(nearest_shapes_colour(*a.shade), a.colour) << "picture " << i;
    // A kind group's members differ in the kind only: the same background shade.
    const ShapesScene first = world.attributes(i - i % 4);
    EXPECT_EQ(scene.background_shade, first.background_shade) << "picture " << i;
  }
  EXPECT_GT(shaded, 48);
  o.shade_fraction = 1.5;
  EXPECT_THROW(ShapesWorld{o}, Error);
}

}  // namespace
}  // namespace clipguide::train
