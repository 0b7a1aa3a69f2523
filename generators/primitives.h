// The "primitives" generator: a flat background and a few soft shapes, each with a centre, half-sizes,
// rotation, colour and opacity, composited back to front. A shape is a superellipse (circle, square, diamond
// and everything between, by its roundness), or, with "kinds", one of several named kinds (circle, square,
// triangle, star, diamond, hexagon, cross, superellipse) chosen by logits that guidance learns too.
// Guidance moves, resizes, reshapes and recolours them (CLIPDraw's idea with filled shapes instead of
// strokes). The image can only be a few flat shapes on a flat field, which is what a small CLIP that knows
// only such pictures (models/shapes-clip) can guide without drifting into adversarial textures.
//
// Shapes: B batch, K primitives, H x W image. Coordinates are normalised so that the shorter image side
// spans [-1, 1] (a primitive of half-size 1 touches both edges of a square image).
#pragma once

#include "generators/generator.h"
#include "generators/latent_tensors.h"

#include <map>
#include <string>

namespace clipguide::generators {

// Settings read from GeneratorOptions::extra (keys in quotes); a value that does not parse is a clipguide::Error.
struct PrimitivesOptions {
  int64_t count = 2;       // "count": primitives per image (K), 1..64
  double edge = 0.03;      // "edge": width of the soft edge in normalised units (0.03 of the half side)
  int64_t fit_steps = 200;  // "fit_steps": Adam steps of init_from_image's least-squares fit
  // Bounds post_step() keeps every primitive in: half-sizes in normalised units and the ratio of the longer
  // half-size to the shorter. The defaults leave shapes free; a small CLIP that knows only shapes of a few
  // sizes (models/shapes-clip/clip-guide.toml) guides better within the sizes it was trained on.
  double min_size = 0.02;   // "min_size", > 0
  double max_size = 2.0;    // "max_size", >= min_size
  double max_aspect = 20;   // "max_aspect", >= 1
  double max_offset = 1.0;  // "max_offset", in (0, 2]: centres stay within this fraction of the half-extent
                            // (1: anywhere up to the image's edges)
  double max_angle = 0;     // "max_angle", radians in [0, pi]: rotation bound (0: none). A small CLIP trained
                            // on upright shapes tells a square from a diamond only by their turn
  // "kinds": what a shape may be, "+"-separated (e.g. "circle+square+triangle+star+diamond+hexagon+cross",
  // or "all"). One kind: every shape is that kind. Several: each shape is drawn as its most likely kind by
  // learnt logits (the "kind" parameter), which learn through the softmax mixture of all kinds (straight
  // through), and each random start favours one kind at random. The
  // named kinds have the half-size as their circumradius (the square's half-side is 0.7 of it, the star's
  // inner radius 0.45, the cross's arms 0.3 wide), triangle, star and hexagon with a vertex up.
  std::vector<std::string> kinds = {"superellipse"};

  static PrimitivesOptions from_extra(const std::map<std::string, std::string>& extra);
};

class PrimitivesGenerator : public Generator {
 public:
  // Parameters for options.batch images of options.count primitives, initialised by init_random(options.seed).
  // Throws clipguide::Error for a size or batch below 1 and for unparsable or out-of-range extra settings.
  explicit PrimitivesGenerator(const GeneratorOptions& options);

  std::string name() const override { return "primitives"; }
  std::vector<at::Tensor> parameters() override;
  at::Tensor render() override;  // (B, 3, H, W) in (0, 1)
  // Least-squares fit (fit_steps Adam steps from a seeded start whose background is the image's mean
  // colour): a few shapes approximate the image; exact only for images made of such shapes.
  void init_from_image(const at::Tensor& image) override;
  // Background and colours uniform in logit space, centres within the middle half of their range, half-sizes
  // 0.2..0.45 (then bounded), exponents from near a diamond to a rounded box, opaque.
  void init_random(uint64_t seed) override;
  std::vector<int64_t> latent_shape() const override {
    return {batch_, options_.count, kValuesPerPrimitive + (mixed() ? static_cast<int64_t>(options_.kinds.size()) : 0)};
  }
  void post_step() override;  // keeps sizes within the options' bounds and centres where tanh has a gradient
  TensorMap state() const override { return latent_.state(); }  // every parameter by name (see parameter_names())
  void load_state(const TensorMap& state) override;
  std::unique_ptr<Generator> rebuilt(const GeneratorOptions& options) const override {
    return rebuilt_on<PrimitivesGenerator>(device_, options);
  }

  const PrimitivesOptions& primitives_options() const { return options_; }
  // The unconstrained parameters, in parameters() order: "background" (B, 3), "centre" (B, K, 2),
  // "log_size" (B, K, 2), "angle" (B, K), "roundness" (B, K), "colour" (B, K, 3), "opacity" (B, K). With
  // "kinds", "roundness" only when they include superellipse, and with several kinds "kind" (B, K, N) logits
  // over the N kinds last.
  static const std::vector<std::string>& parameter_names();
  // Every kind "kinds" may name.
  static const std::vector<std::string>& kind_names();
  static constexpr int64_t kValuesPerPrimitive = 10;  // 2 centre + 2 size + angle + roundness + 3 colour + opacity

 private:
  bool mixed() const { return options_.kinds.size() > 1; }
  std::vector<std::string> names() const;  // the parameters this generator has, in parameters() order
  void set(const TensorMap& values);  // in place once allocated, so optimisers keep working
  // (B, K, H, W) coverage in (0, 1) of each shape kind `kind` given the shape's own frame (u, v) (units of the
  // half-sizes) and the scale to normalised units.
  at::Tensor coverage(const std::string& kind, const at::Tensor& u, const at::Tensor& v, const at::Tensor& scale,
                      const TensorMap& p) const;
  at::Tensor render_params(const TensorMap& params) const;  // render() of any parameter set (the fit uses it)

  PrimitivesOptions options_;
  int64_t batch_, height_, width_;  // B, H, W
  uint64_t seed_;                   // init_from_image's starting point
  c10::Device device_;
  LatentTensors latent_;  // parameter_names() (those in use): leaf tensors with requires_grad
  at::Tensor grid_x_;  // (1, 1, H, W) normalised x of each pixel centre
  at::Tensor grid_y_;  // (1, 1, H, W) normalised y
};

}  // namespace clipguide::generators
