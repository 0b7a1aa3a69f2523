#!/usr/bin/env python3
"""Python side of bench/train_bench: open_clip's own training loop (open_clip_train.train.train_one_epoch)
on the pre-rendered batches bench/train_bench wrote, with what open_clip_train.main sets up around it:
open_clip's CLIP from the same config JSON, ClipLoss, AdamW with main.py's two parameter groups, the
cosine schedule of open_clip_train.scheduler. fp32 on the CPU, one process.

  train_ref.py --dir DIR --warmup W --steps N [--threads T]
    DIR: config.json (open_clip schema), images.npy (K*B, 3, S, S) float32 normalised, tokens.npy (K*B, L)
    int64, meta.json {"batch_size", "lr", "wd", "beta1", "beta2", "eps", "warmup_lr", "total_steps"}.
    Prints one JSON line: samples_per_s, step_s (mean over the timed steps), threads, torch, open_clip.
"""
import argparse
import dataclasses
import json
import os
import time
import types

import numpy as np
import torch
import open_clip
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from open_clip_train.scheduler import cosine_lr
from open_clip_train.train import train_one_epoch


class Batches(list):
    """What train_one_epoch reads off a DataLoader: iteration plus num_batches and num_samples."""

    def __init__(self, batches, batch_size):
        super().__init__(batches)
        self.num_batches = len(batches)
        self.num_samples = len(batches) * batch_size


def fields(cls, cfg):
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in cfg.items() if k in names}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with open(os.path.join(args.dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(args.dir, "meta.json")) as f:
        meta = json.load(f)
    model = CLIP(embed_dim=cfg["embed_dim"], vision_cfg=CLIPVisionCfg(**fields(CLIPVisionCfg, cfg["vision_cfg"])),
                 text_cfg=CLIPTextCfg(**fields(CLIPTextCfg, cfg["text_cfg"])), quick_gelu=cfg.get("quick_gelu", False),
                 output_dict=True)  # as open_clip_train.main creates it
    images = torch.from_numpy(np.load(os.path.join(args.dir, "images.npy")))
    tokens = torch.from_numpy(np.load(os.path.join(args.dir, "tokens.npy")))
    b = meta["batch_size"]
    k = images.shape[0] // b
    batches = [(images[i * b:(i + 1) * b], tokens[i * b:(i + 1) * b]) for i in range(k)]

    # open_clip_train/main.py: parameter groups, AdamW, cosine schedule, ClipLoss.
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    include = lambda n, p: not exclude(n, p)
    named_parameters = list(model.named_parameters())
    gain_or_bias_params = [p for n, p in named_parameters if exclude(n, p) and p.requires_grad]
    rest_params = [p for n, p in named_parameters if include(n, p) and p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": gain_or_bias_params, "weight_decay": 0.}, {"params": rest_params, "weight_decay": meta["wd"]}],
        lr=meta["lr"], betas=(meta["beta1"], meta["beta2"]), eps=meta["eps"])
    scheduler = cosine_lr(optimizer, meta["lr"], meta["warmup_lr"], meta["total_steps"])
    loss = open_clip.ClipLoss(local_loss=False, gather_with_grad=False, cache_labels=True, rank=0, world_size=1)
    train_args = types.SimpleNamespace(
        device="cpu", precision="fp32", distill=False, accum_freq=1, skip_scheduler=False, horovod=False,
        grad_clip_norm=None, batch_size=b, world_size=1, rank=0, local_rank=0, log_every_n_steps=10**9,
        wandb=False, distributed=False)

    def epoch_of(n, epoch):
        data = {"train": types.SimpleNamespace(dataloader=Batches([batches[i % k] for i in range(n)], b),
                                               set_epoch=lambda e: None)}
        train_one_epoch(model, data, loss, epoch, optimizer, None, scheduler, None, train_args)

    epoch_of(args.warmup, 0)
    start = time.perf_counter()
    epoch_of(args.steps, 1)
    elapsed = time.perf_counter() - start
    print(json.dumps({"samples_per_s": args.steps * b / elapsed, "step_s": elapsed / args.steps,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "open_clip": open_clip.__version__}))


if __name__ == "__main__":
    main()
