"""Reference fixture for tests/guidance/optimizers_test.cpp: torch.optim's Adamax and RAdam and
torch_optimizer's DiffGrad and AdamP (the optimisers VQGAN+CLIP's generate.py offers beyond LibTorch's),
stepped STEPS times in float64 on fixed parameters with fixed gradients.

Parameters: "a" (4, 6) whose gradients are orthogonal to each of its rows (AdamP's channel projection
applies), "b" (3, 5) whose gradients lean along it (no projection), "c" (7,) (a vector: AdamP never projects).
Writes into DIR:
  optimizers.safetensors  init_<p>, grad_<p>_<t> for t < STEPS, and per optimiser <opt>_<p> (after STEPS steps)
                          and <opt>_<p>_half (after STEPS / 2)
  DONE                    written last

Usage: python optimizers.py --out DIR [--test-data DIR]
"""
import os

import torch
import torch_optimizer
from safetensors.torch import save_file
import fixture_cli  # tests/reference/fixture_cli.py, beside this script

STEPS = 12
LR = 0.05
WD = 0.01


def make(name, params):
    if name == "adamax":
        return torch.optim.Adamax(params, lr=LR, weight_decay=WD)
    if name == "radam":
        return torch.optim.RAdam(params, lr=LR, weight_decay=WD)
    if name == "diffgrad":  # generate.py's settings
        return torch_optimizer.DiffGrad(params, lr=LR, eps=1e-9, weight_decay=1e-9)
    return torch_optimizer.AdamP(params, lr=LR, weight_decay=WD)


def main():
    args = fixture_cli.start()
    g = torch.Generator().manual_seed(7)
    init = {"a": torch.randn(4, 6, generator=g, dtype=torch.float64),
            "b": torch.randn(3, 5, generator=g, dtype=torch.float64),
            "c": torch.randn(7, generator=g, dtype=torch.float64)}
    grads = {k: [] for k in init}
    for t in range(STEPS):
        r = torch.randn(4, 6, generator=g, dtype=torch.float64)
        a = init["a"]
        grads["a"].append(r - (r * a).sum(1, keepdim=True) / (a * a).sum(1, keepdim=True) * a)
        grads["b"].append(0.8 * init["b"] + 0.1 * torch.randn(3, 5, generator=g, dtype=torch.float64))
        grads["c"].append(torch.randn(7, generator=g, dtype=torch.float64) * (1 + t % 3))
    out = {f"init_{k}": v for k, v in init.items()}
    for k, gs in grads.items():
        out.update({f"grad_{k}_{t}": gt for t, gt in enumerate(gs)})
    for name in ["adamax", "radam", "diffgrad", "adamp"]:
        params = {k: v.clone().requires_grad_() for k, v in init.items()}
        opt = make(name, list(params.values()))
        for t in range(STEPS):
            for k, p in params.items():
                p.grad = grads[k][t].clone()
            opt.step()
            if t + 1 == STEPS // 2:
                out.update({f"{name}_{k}_half": p.detach().clone() for k, p in params.items()})
        out.update({f"{name}_{k}": p.detach().clone() for k, p in params.items()})
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(args.out, "optimizers.safetensors"))
    fixture_cli.finish(args.out)


if __name__ == "__main__":
    main()
