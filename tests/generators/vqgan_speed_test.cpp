// Tests for the vqgan generator's speed options (GeneratorOptions::autocast and channels_last): channels-last
// renders the same image and gradient as the default layout, bf16 autocast (decoder only) stays close to fp32
// and still returns float. A small random-weight VQModel built in place: no fixture needed.
// Shapes: B batch, H x W image, E embed_dim.
#include "generators/vqgan/vqgan_generator.h"

#include "test_util.h"

#include <ATen/Parallel.h>
#include <ATen/ops/cat.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

namespace clipguide::generators::vqgan {
namespace {

VQModel small_model() {
  VqganConfig c;
  c.ch = 32;
  c.ch_mult = {1, 2};
  c.num_res_blocks = 1;
  c.encoder_attn = {false, true};
  c.decoder_attn = {false, true};
  c.z_channels = 32;
  c.n_embed = 16;
  c.embed_dim = 8;
  torch::manual_seed(0);
  VQModel m(c);
  m->eval();
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

GeneratorOptions small_options() {  // a 48 x 32 image, seed 3
  GeneratorOptions options;
  options.width = 48;
  options.height = 32;
  options.seed = 3;
  return options;
}

struct Rendered {
  at::Tensor image;  // (1, 3, H, W)
  at::Tensor grad;   // d sum(image * weights) / d z, (1, E, h, w)
};

Rendered render(VQModel model, const GeneratorOptions& options) {
  VqganGenerator g(model, options);
  at::Tensor image = g.render();
  torch::manual_seed(5);
  (image * at::rand(image.sizes())).sum().backward();
  return {image.detach(), g.z().grad().clone()};
}

TEST(VqganSpeedOptions, ChannelsLastMatchesAndBf16AutocastIsClose) {
  at::set_num_threads(1);
  GeneratorOptions options = small_options();
  VQModel model = small_model();
  Rendered base = render(model, options);
  ASSERT_EQ(shape_str(base.image.sizes()), "[1, 3, 32, 48]");

  GeneratorOptions bf16 = options;
  bf16.autocast = at::kBFloat16;
  Rendered half = render(model, bf16);
  EXPECT_EQ(half.image.scalar_type(), at::kFloat);
  const double image_diff = test::max_abs_diff(base.image, half.image);
  const double grad_diff = test::max_abs_diff(base.grad, half.grad), grad_max = base.grad.abs().max().item<double>();
  std::printf("bf16 autocast: image max abs diff %.2e, z gradient max abs diff %.2e of max %.2e\n", image_diff,
              grad_diff, grad_max);
  EXPECT_GT(image_diff, 0.0);  // the decoder really ran in bf16
  EXPECT_LT(image_diff, 0.05);
  EXPECT_LT(grad_diff, 0.05 * grad_max);

  GeneratorOptions nhwc = options;
  nhwc.channels_last = true;
  Rendered cl = render(model, nhwc);  // converts the shared model's conv weights in place
  EXPECT_TRUE(model->decoder->conv_in->weight.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TENSOR_CLOSE(cl.image, base.image, 1e-5, 1e-5);
  EXPECT_TENSOR_CLOSE(cl.grad, base.grad, 1e-5, 1e-4);
}

// Activation checkpointing of the decoder: the same image and latent gradient as keeping the activations
// (fp32 and under bf16 autocast, whose state the recomputation must see), and the decoder's weights get the
// same gradient when they require it.
TEST(VqganSpeedOptions, CheckpointingGivesTheSameGradient) {
  at::set_num_threads(1);
  GeneratorOptions options = small_options();
  for (at::ScalarType autocast : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(autocast == at::kFloat ? "fp32" : "bf16 autocast");
    options.autocast = autocast;
    options.checkpoint = false;
    VQModel model = small_model();
    Rendered base = render(model, options);
    options.checkpoint = true;
    Rendered recomputed = render(model, options);
    EXPECT_TRUE(model->decoder->checkpointing());
    EXPECT_TENSOR_CLOSE(recomputed.image, base.image, 0, 0);
    EXPECT_TENSOR_CLOSE(recomputed.grad, base.grad, 1e-6, 1e-5);
  }
  // Trainable decoder weights: their gradients flow through the checkpointed stages too.
  options.autocast = at::kFloat;
  std::vector<at::Tensor> grads;
  for (bool checkpoint : {false, true}) {
    VQModel model = small_model();
    model->decoder->conv_out->weight.set_requires_grad(true);
    model->decoder->up[0]->blocks[0]->conv1->weight.set_requires_grad(true);
    options.checkpoint = checkpoint;
    render(model, options);
    grads.push_back(at::cat({model->decoder->conv_out->weight.grad().flatten(),
                             model->decoder->up[0]->blocks[0]->conv1->weight.grad().flatten()}));
  }
  EXPECT_TENSOR_CLOSE(grads[1], grads[0], 1e-6, 1e-5);
}

// rebuilt() shares the VQModel (no copy of its weights) and each generator keeps its own checkpointing:
// a checkpointed probe does not turn it on for the original, and both render what a fresh one would.
TEST(VqganSpeedOptions, RebuiltSharesTheModelAndKeepsItsOwnCheckpointing) {
  at::set_num_threads(1);
  GeneratorOptions options = small_options();
  VQModel model = small_model();
  VqganGenerator original(model, options);
  const at::Tensor before = original.render().detach();
  GeneratorOptions other = options;
  other.width = other.height = 16;
  other.checkpoint = true;
  auto rebuilt = original.rebuilt(other);
  ASSERT_NE(rebuilt, nullptr);
  auto& probe = dynamic_cast<VqganGenerator&>(*rebuilt);
  EXPECT_EQ(probe.model().get(), original.model().get());  // one model, not a copy
  EXPECT_EQ(shape_str(probe.render().sizes()), "[1, 3, 16, 16]");
  EXPECT_TRUE(model->decoder->checkpointing());
  EXPECT_TENSOR_CLOSE(original.render().detach(), before, 0, 0);
  EXPECT_FALSE(model->decoder->checkpointing());  // the original renders with its own setting
  Rendered fresh = render(model, options);
  EXPECT_TENSOR_CLOSE(fresh.image, before, 0, 0);
}

}  // namespace
}  // namespace clipguide::generators::vqgan
