#!/usr/bin/env python3
"""Python side of bench/guide_bench: the VQGAN+CLIP loop (nerdyrodent generate.py, original cutouts, no
augmentations) written with the PyPI reference packages (openai-clip + taming-transformers-rom1504).

  guide_ref.py --write DIR    random-weight ViT-B/32 CLIP (state dict) and VQGAN f16 (Lightning .ckpt + YAML);
                              --lightning: the .ckpt with optimizer states too, a released file's size
  guide_ref.py --run DIR ...  times the reference loop on those files; prints one JSON line
                              (--device cuda, --bf16 autocast, --channels-last: as guide_bench's flags)
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

# One copy of the Lightning shim and VQGAN+CLIP's autograd functions, shared with the test fixtures.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "reference"))
from taming_compat import clamp_with_grad, vector_quantize  # noqa: E402  (before taming: installs its shim)
from omegaconf import OmegaConf  # noqa: E402
from taming.models.vqgan import VQModel  # noqa: E402
try:  # openai-clip 1.0.1 imports `packaging` through pkg_resources, which new setuptools no longer has
    import pkg_resources  # noqa: F401,E402
except ImportError:
    import packaging.version  # noqa: E402
    import types as _types  # noqa: E402
    sys.modules["pkg_resources"] = _types.SimpleNamespace(packaging=packaging)
import clip  # noqa: E402
from clip import model as clip_model  # noqa: E402

# VQGAN f16 (imagenet_f16_16384's architecture, smaller codebook to keep the file small).
DDCONFIG = dict(double_z=False, z_channels=256, resolution=256, in_channels=3, out_ch=3, ch=128,
                ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], dropout=0.0)
N_EMBED, EMBED_DIM = 1024, 256


def write(out, lightning=False):
    """lightning: the checkpoint also holds what a released taming .ckpt carries besides the weights (Adam's two
    moments per parameter, as Lightning's optimizer_states), so it has a real checkpoint's size (~1 GB)."""
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    cfg = {"model": {"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": EMBED_DIM, "n_embed": N_EMBED, "ddconfig": DDCONFIG, "lossconfig": {"target": "torch.nn.Identity"}}}}
    OmegaConf.save(OmegaConf.create(cfg), os.path.join(out, "vqgan.yaml"))
    model = VQModel(ddconfig=DDCONFIG, lossconfig={"target": "torch.nn.Identity"}, n_embed=N_EMBED, embed_dim=EMBED_DIM)
    checkpoint = {"state_dict": model.state_dict(), "epoch": 0}
    if lightning:
        params = list(model.parameters())
        checkpoint["optimizer_states"] = [{"state": {i: {"step": torch.tensor(1000.0), "exp_avg": torch.randn_like(p),
                                                         "exp_avg_sq": torch.rand_like(p)} for i, p in enumerate(params)},
                                           "param_groups": [{"lr": 4.5e-6, "params": list(range(len(params)))}]}]
    torch.save(checkpoint, os.path.join(out, "vqgan.ckpt"))
    clip_net = clip_model.CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12)  # ViT-B/32
    torch.save(clip_net.state_dict(), os.path.join(out, "clip.pt"))


def spherical_dist(a, b):
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def run(args):
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = VQModel(ddconfig=DDCONFIG, lossconfig={"target": "torch.nn.Identity"}, n_embed=N_EMBED, embed_dim=EMBED_DIM)
    model.load_state_dict(torch.load(os.path.join(args.dir, "vqgan.ckpt"), weights_only=False)["state_dict"])
    model.eval().requires_grad_(False).to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    perceptor = clip_model.build_model(torch.load(os.path.join(args.dir, "clip.pt"))).float().eval().requires_grad_(False)
    perceptor.to(device)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)
    normalize = lambda x: (x - mean) / std
    embed = perceptor.encode_text(clip.tokenize([args.prompt]).to(device)).float()
    f = 2 ** (model.decoder.num_resolutions - 1)
    toksX, toksY = args.size // f, args.size // f
    e_dim, n_toks = model.quantize.e_dim, model.quantize.n_e
    z_min = model.quantize.embedding.weight.min(dim=0).values[None, :, None, None]
    z_max = model.quantize.embedding.weight.max(dim=0).values[None, :, None, None]
    one_hot = F.one_hot(torch.randint(n_toks, [toksY * toksX]).to(device), n_toks).float()
    z = (one_hot @ model.quantize.embedding.weight).view([-1, toksY, toksX, e_dim]).permute(0, 3, 1, 2)
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=args.lr)
    cut_size = perceptor.visual.input_resolution

    def cutouts(x):  # VQGAN+CLIP's original MakeCutouts (random square crops, pooled to the CLIP size)
        side = x.shape[2:4]
        max_size, min_size = min(side), min(min(side), cut_size)
        out = []
        for _ in range(args.cutn):
            size = int(torch.rand([]) ** 1.0 * (max_size - min_size) + min_size)
            ox = torch.randint(0, side[1] - size + 1, ())
            oy = torch.randint(0, side[0] - size + 1, ())
            out.append(F.adaptive_avg_pool2d(x[:, :, oy:oy + size, ox:ox + size], cut_size))
        return torch.cat(out)

    def amp():  # bf16 autocast around the two networks only, as clipguide does (quantisation stays fp32)
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step():
        z_q = vector_quantize(z.movedim(1, 3), model.quantize.embedding.weight).movedim(3, 1)
        if args.channels_last:
            z_q = z_q.contiguous(memory_format=torch.channels_last)
        with amp():
            decoded = model.decode(z_q)
        out = clamp_with_grad(decoded.float().add(1).div(2), 0, 1)
        cuts = normalize(cutouts(out))
        with amp():
            iii = perceptor.encode_image(cuts)
        iii = iii.float()
        loss = spherical_dist(iii.unsqueeze(1), embed.unsqueeze(0)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
        return loss.item()

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)  # the models stay counted: peak = weights + activations
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    loss = 0.0
    for _ in range(args.iters):
        loss = step()  # loss.item(): one sync a step, as clipguide's report
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    mib = lambda b: b / 2 ** 20
    # The arithmetic floor (CPU): a step's matmul and convolution FLOPs, counted by torch, and what one large
    # fp32 matmul reaches on this machine with the same threads. No fp32 implementation built from direct
    # convolutions and GEMMs runs a step faster than step_gflop / sgemm_gflops seconds.
    step_gflop = sgemm_gflops = None
    if not cuda:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            step()
        step_gflop = counter.get_total_flops() / 1e9
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        sgemm_gflops = 2 * 2048 ** 3 / best / 1e9
    print(json.dumps({
        "impl": "reference", "device": str(device), "size": args.size, "cutn": args.cutn, "iters": args.iters,
        "warmup": args.warmup, "bf16": args.bf16, "channels_last": args.channels_last,
        "its_per_s": args.iters / elapsed, "ms_per_it": 1000 * elapsed / args.iters, "last_loss": loss,
        "peak_cuda_allocated_mb": mib(torch.cuda.max_memory_allocated(device)) if cuda else None,
        "peak_cuda_reserved_mb": mib(torch.cuda.max_memory_reserved(device)) if cuda else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_gflop": step_gflop, "sgemm_gflops": sgemm_gflops,
        "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--write")
    ap.add_argument("--lightning", action="store_true", help="--write: with optimizer states (a real .ckpt's size)")
    ap.add_argument("--run", dest="dir")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cutn", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt", default="a painting of a lighthouse at dusk")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the VQGAN decoder and CLIP's image tower")
    ap.add_argument("--channels-last", action="store_true", help="VQGAN weights and activations channels-last")
    args = ap.parse_args()
    if args.write:
        write(args.write, args.lightning)
    else:
        torch.set_grad_enabled(True)
        run(args)
