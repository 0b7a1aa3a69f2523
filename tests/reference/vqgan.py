#!/usr/bin/env python3
"""Reference fixture for generators/vqgan: small random-weight taming-transformers models (VQModel and
GumbelVQ) in every file format the C++ side reads, and what taming and VQGAN+CLIP make of a fixed image
and a fixed latent.

Writes to --out, for each model M in (vq, gumbel):
  M.ckpt          Lightning-style torch.save zip: {"state_dict", "epoch", "global_step", "hyper_parameters"
                  (with an omegaconf DictConfig, a foreign class the C++ reader must not instantiate),
                  "optimizer_states", "lr_schedulers", "callbacks", ...}; state_dict has an extra loss.* key
  M.safetensors   the same state_dict without the loss.* key
  M.yaml          taming's config (model.target, model.params.{ddconfig, n_embed, embed_dim, lossconfig})
and expected.safetensors with, per model M:
  M.image         (1, 3, H, W) in [0, 1]  the fixed test image
  M.h             (1, E, h, w)  encoder -> quant_conv
  M.z_q           (1, E, h, w)  quantised (VQModel: taming's quantize; GumbelVQ: argmax of proj logits, i.e.
                                taming without the Gumbel noise it samples even in eval mode)
  M.indices       (1, h, w) int64
  vq.emb_loss     (1)           VectorQuantizer's loss (commitment + beta * codebook: taming's legacy form)
  M.decoded       (1, 3, H, W)  model.decode(z_q), in [-1, 1]-ish
  M.synth_z       (2, E, h, w)  a fixed latent
  M.synth         (2, 3, H, W)  VQGAN+CLIP's synth(synth_z) (vector_quantize + decode + clamp_with_grad)
  M.synth_weight  (2, 3, H, W)  fixed weights w
  M.synth_grad_z  (2, E, h, w)  d sum(w * synth(synth_z)) / d synth_z
and, for the released architectures N in (imagenet_f16_16384, gumbel_f8_8192), N.yaml and N.shapes.safetensors
(state-dict key -> its shape as an int64 vector; no weights), then DONE last.
"""

import numpy as np
import torch
from safetensors.torch import save_file

import pytorch_lightning
from taming_compat import clamp_with_grad, vector_quantize  # before taming: installs its Lightning shim

from omegaconf import OmegaConf
from taming.models.vqgan import GumbelVQ, VQModel
import fixture_cli  # tests/reference/fixture_cli.py, beside this script

IMAGE_H, IMAGE_W = 32, 48


# ref: nerdyrodent/VQGAN-CLIP generate.py (synth)
def synth(model, codebook, z):
    z_q = vector_quantize(z.movedim(1, 3), codebook).movedim(3, 1)
    return clamp_with_grad(model.decode(z_q).add(1).div(2), 0, 1)


def min_margin(x_flat, codebook):
    """Smallest gap between the nearest and second-nearest code: keeps argmin free of near-ties, which
    rounding differences between implementations could flip."""
    d = x_flat.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2 * x_flat @ codebook.T
    top2 = d.topk(2, dim=-1, largest=False).values
    return (top2[:, 1] - top2[:, 0]).min().item()


def smooth_image(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((3, h, w))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 4, 3)
        img[c] = 0.5 + 0.4 * np.sin(fx * x / w * np.pi + ph) * np.cos(fy * y / h * np.pi)
    img += rng.normal(0, 0.02, img.shape)
    return torch.from_numpy(np.clip(img, 0, 1)).float()[None]


def config(target, ddconfig, n_embed, embed_dim):
    params = {"embed_dim": embed_dim, "n_embed": n_embed, "ddconfig": ddconfig,
              "lossconfig": {"target": "torch.nn.Identity"}}
    if target.endswith("GumbelVQ"):
        params["kl_weight"] = 1.0e-08
        params["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9, "lr_max": 0.9,
                       "lr_min": 1.0e-06}}
    return {"model": {"base_learning_rate": 4.5e-06, "target": target, "params": params}}


def make_case(name, cfg, seed, out, expected):
    torch.manual_seed(seed)
    cls = GumbelVQ if cfg["model"]["target"].endswith("GumbelVQ") else VQModel
    params = cfg["model"]["params"]
    model = cls(**OmegaConf.to_container(OmegaConf.create(params))).eval()
    gumbel = cls is GumbelVQ
    with torch.no_grad():
        # Random weights everywhere, norms included (defaults of 1 and 0 would hide swapped names).
        for pname, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if "norm" in pname else 0.02))
    image = smooth_image(IMAGE_H, IMAGE_W, seed)
    codebook_param = model.quantize.embed.weight if gumbel else model.quantize.embedding.weight
    with torch.no_grad():
        h = model.quant_conv(model.encoder(image * 2 - 1))
        scale = h.std().item()
        # A codebook at the encoder's scale, redrawn until neither the image nor the synth latent has a near-tie.
        g = torch.Generator().manual_seed(seed + 1)
        for _ in range(200):
            codebook = torch.randn(codebook_param.shape, generator=g) * scale
            synth_z = torch.randn(2, h.shape[1], h.shape[2], h.shape[3], generator=g) * scale
            ok = min_margin(synth_z.movedim(1, 3).reshape(-1, h.shape[1]), codebook) > 1e-3 * scale * scale
            if not gumbel:
                ok = ok and min_margin(h.movedim(1, 3).reshape(-1, h.shape[1]), codebook) > 1e-3 * scale * scale
            if ok:
                break
        else:
            raise RuntimeError("no tie-free codebook found")
        codebook_param.copy_(codebook)

        if gumbel:
            logits = model.quantize.proj(h)
            # Sorted logits: keep the argmax free of near-ties too.
            top2 = logits.topk(2, dim=1).values
            assert (top2[:, 0] - top2[:, 1]).min().item() > 1e-4, "gumbel logits near-tie; change the seed"
            indices = logits.argmax(1)
            z_q = model.quantize.embed(indices).movedim(3, 1)
        else:
            z_q, emb_loss, (_, _, indices) = model.encode(image * 2 - 1)
            indices = indices.reshape(1, h.shape[2], h.shape[3])
            expected[f"{name}.emb_loss"] = emb_loss.reshape(1)
        decoded = model.decode(z_q)

    z = synth_z.clone().requires_grad_()
    rendered = synth(model, codebook_param, z)
    weight = torch.randn(rendered.shape, generator=g)
    (rendered * weight).sum().backward()

    expected.update({f"{name}.image": image, f"{name}.h": h, f"{name}.z_q": z_q, f"{name}.indices": indices,
                     f"{name}.decoded": decoded, f"{name}.synth_z": synth_z, f"{name}.synth": rendered.detach(),
                     f"{name}.synth_weight": weight, f"{name}.synth_grad_z": z.grad})

    state_dict = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state_dict, f"{out}/{name}.safetensors")
    ckpt_state = dict(state_dict)
    # What a real taming checkpoint carries besides the autoencoder: loss (LPIPS, discriminator) weights.
    ckpt_state["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": pytorch_lightning.__version__,
                "state_dict": ckpt_state,
                "hyper_parameters": {"ddconfig": OmegaConf.create(params["ddconfig"]),
                                     "lossconfig": OmegaConf.create(params["lossconfig"]),
                                     "n_embed": params["n_embed"], "embed_dim": params["embed_dim"]},
                "optimizer_states": [], "lr_schedulers": [], "callbacks": {}, "loops": {}},
               f"{out}/{name}.ckpt")
    OmegaConf.save(OmegaConf.create(cfg), f"{out}/{name}.yaml")


def main():
    args = fixture_cli.start()
    torch.set_num_threads(1)

    expected = {}
    # f4, two res blocks per level, attention at resolution 16 only (level 1 of 3).
    vq_dd = {"double_z": False, "z_channels": 16, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
             "ch_mult": [1, 1, 2], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}
    make_case("vq", config("taming.models.vqgan.VQModel", vq_dd, 64, 16), 1, args.out, expected)
    # f2, one res block per level, no attention outside the middle; z_channels == embed_dim as GumbelVQ needs.
    gumbel_dd = {"double_z": False, "z_channels": 16, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
                 "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    make_case("gumbel", config("taming.models.vqgan.GumbelVQ", gumbel_dd, 64, 16), 2, args.out, expected)

    # Full-size architectures, names and shapes only (no weights): what the released checkpoints hold.
    for name, target, dd, n_embed in [
            ("imagenet_f16_16384", "taming.models.vqgan.VQModel",
             {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
              "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}, 16384),
            ("gumbel_f8_8192", "taming.models.vqgan.GumbelVQ",
             {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
              "ch_mult": [1, 1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [32], "dropout": 0.0}, 8192)]:
        cfg = config(target, dd, n_embed, 256)
        cls = GumbelVQ if target.endswith("GumbelVQ") else VQModel
        with torch.device("meta"):
            model = cls(**OmegaConf.to_container(OmegaConf.create(cfg["model"]["params"])))
        shapes = {k: torch.tensor(list(v.shape), dtype=torch.int64) for k, v in model.state_dict().items()}
        save_file(shapes, f"{args.out}/{name}.shapes.safetensors")
        OmegaConf.save(OmegaConf.create(cfg), f"{args.out}/{name}.yaml")

    save_file({k: v.detach().contiguous() for k, v in expected.items()}, f"{args.out}/expected.safetensors")
    fixture_cli.finish(args.out)


if __name__ == "__main__":
    main()
