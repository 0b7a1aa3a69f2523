#!/usr/bin/env python3
"""Reference fixture for core/io: weight files written by the real packages (torch, safetensors, numpy).

For every file F it writes F.expected.json: the tensors a reader must produce (dtype as torch names it,
shape, and the exact bytes in C order in F.expected/<n>.bin), plus metadata and the pickle classes a
restricted reader must skip. The C++ tests compare bit for bit. Writes OUT/DONE last.
"""
import argparse
import io
import json
import os
import pickle
import zipfile

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file
import fixture_cli  # tests/reference/fixture_cli.py, beside this script


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def raw_bytes(t):
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def write_expected(out, file_name, tensors, fmt, metadata=None, skipped=None):
    folder = os.path.join(out, file_name + ".expected")
    os.makedirs(folder, exist_ok=True)
    entries = {}
    for i, (name, t) in enumerate(sorted(tensors.items())):
        blob = f"{i}.bin"
        with open(os.path.join(folder, blob), "wb") as f:
            f.write(raw_bytes(t))
        entries[name] = {"dtype": dtype_name(t.dtype), "shape": list(t.shape), "file": file_name + ".expected/" + blob}
    doc = {"format": fmt, "tensors": entries, "metadata": metadata or {}, "skipped_classes": skipped or []}
    with open(os.path.join(out, file_name + ".expected.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


class Foreign:
    """A class the C++ reader cannot know: must come back as a skipped object, never instantiated."""

    def __init__(self):
        self.value = 42


class Evil:
    """Unpickling this with Python's pickle would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


class EvilEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


class Block(nn.Module):
    def __init__(self, d_in):
        super().__init__()
        self.fc = nn.Linear(d_in, 3)
        self.ln = nn.LayerNorm(3)
        self.register_buffer("scale", torch.tensor([0.5, 2.0, 3.0]))

    def forward(self, x):
        return self.ln(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.blocks = nn.ModuleList([Block(4), Block(3)])
        self.proj = nn.Parameter(torch.randn(3, 2))
        self.head = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 5))
        self.half_layer = nn.Linear(2, 2).half()
        self.register_buffer("counts", torch.arange(6, dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False, True]))

    def forward(self, x):
        y = self.conv1(x).mean(dim=(2, 3))[:, :4]
        for b in self.blocks:
            y = b(y)
        y = y @ self.proj
        y = y + self.half_layer(y.half()).float()
        return self.head(y)


def all_dtype_tensors():
    g = torch.Generator().manual_seed(0)
    t = {
        "f64": torch.randn(3, 4, dtype=torch.float64, generator=g),
        "f32": torch.randn(2, 3, 5, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(4, 2, generator=g).bfloat16(),
        "i64": torch.tensor([-(2**62), -1, 0, 2**62 + 5]),
        "i32": torch.tensor([[-(2**31), 7], [2**31 - 1, 0]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 12, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.arange(256, dtype=torch.uint8).reshape(16, 16),
        "bool": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "f8_e4m3": torch.tensor([0.5, -1.0, 448.0]).to(torch.float8_e4m3fn),
        "f8_e5m2": torch.tensor([0.25, -2.0, 57344.0]).to(torch.float8_e5m2),
        "u16": torch.tensor([0, 65535], dtype=torch.uint16),
        "u32": torch.tensor([0, 2**32 - 1], dtype=torch.uint32),
        "u64": torch.tensor([0, 2**63 + 1], dtype=torch.uint64),
        "c64": torch.tensor([1 + 2j, -3.5j], dtype=torch.complex64),
    }
    t["f32"][0, 0, 0] = float("nan")
    t["f32"][0, 0, 1] = float("-inf")
    return t


def main():
    out = fixture_cli.start().out
    torch.manual_seed(0)

    # --- safetensors -------------------------------------------------------------------------------
    st = all_dtype_tensors()
    meta = {"format": "pt", "note": "naïve ✓ unicode", "empty": ""}
    save_file(st, os.path.join(out, "all_dtypes.safetensors"), metadata=meta)
    write_expected(out, "all_dtypes.safetensors", st, "safetensors", metadata=meta)
    small = {"b": torch.ones(2), "a": torch.arange(3, dtype=torch.int32)}
    save_file(small, os.path.join(out, "no_metadata.safetensors"))
    write_expected(out, "no_metadata.safetensors", small, "safetensors")

    # --- torch.save zip archives -------------------------------------------------------------------
    net = Net()
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    torch.save(sd, os.path.join(out, "plain.pt"))
    write_expected(out, "plain.pt", sd, "torch_zip")

    ns = argparse.Namespace(lr=0.1, name="run")
    lightning = {"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.0.0", "state_dict": sd,
                 "hyper_parameters": {"lr": 0.1, "args": ns}, "optimizer_states": [{"state": {}, "lr": 0.1}]}
    torch.save(lightning, os.path.join(out, "lightning.ckpt"))
    write_expected(out, "lightning.ckpt", sd, "torch_zip", skipped=["argparse.Namespace"])

    openclip = {"epoch": 5, "name": "ViT-B-32", "state_dict": {"module." + k: v for k, v in sd.items()},
                "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-3}]}}
    torch.save(openclip, os.path.join(out, "openclip_ddp.pt"))
    write_expected(out, "openclip_ddp.pt", sd, "torch_zip")

    torch.save({"model": sd, "args": ns}, os.path.join(out, "model_key.pt"))
    write_expected(out, "model_key.pt", sd, "torch_zip", skipped=["argparse.Namespace"])

    dtypes = {k: v for k, v in all_dtype_tensors().items() if k not in ("c64",)}
    dtypes["param"] = nn.Parameter(torch.randn(2, 2))
    torch.save(dtypes, os.path.join(out, "dtypes.pt"))
    write_expected(out, "dtypes.pt", dtypes, "torch_zip")

    base = torch.arange(40, dtype=torch.float32)
    m = torch.randn(5, 6)
    views = {
        "base": base,
        "slice": base[3:11],                       # offset into a shared storage
        "reshaped": base[10:30].view(4, 5),
        "strided": base.view(8, 5)[1:7:2, 1:4],    # non-contiguous, offset
        "transposed": m.t(),                       # non-contiguous strides
        "m": m,
        "expanded": torch.tensor([1.0, 2.0, 3.0]).expand(4, 3),  # stride 0
        "half_view": torch.randn(6, 4).half()[:, 1],
    }
    torch.save(views, os.path.join(out, "views.pt"))
    write_expected(out, "views.pt", views, "torch_zip")

    nested = {
        "weight": torch.randn(3),
        "param": nn.Parameter(torch.randn(2, 3)),
        "sub": {"a": torch.ones(2, dtype=torch.int32), "deeper": {"b": torch.zeros(1, dtype=torch.bfloat16)}},
        "list": [torch.tensor([1.0]), {"c": torch.tensor([2, 3])}, "text"],
        "tuple": (torch.tensor([4.0]), 7),
        "int": 12, "neg": -5, "big": 2**40, "float": 1.5, "str": "hello ✓", "none": None, "yes": True,
        "bytes": b"\x00\x01raw",
        "ns": ns, "foreign": Foreign(),
        "dtype": torch.float16, "device": torch.device("cpu"),
    }
    torch.save(nested, os.path.join(out, "nested.pt"))
    flat = {"weight": nested["weight"], "param": nested["param"], "sub.a": nested["sub"]["a"],
            "sub.deeper.b": nested["sub"]["deeper"]["b"], "list.0": nested["list"][0],
            "list.1.c": nested["list"][1]["c"], "tuple.0": nested["tuple"][0]}
    write_expected(out, "nested.pt", flat, "torch_zip", skipped=["argparse.Namespace", "__main__.Foreign"])

    torch.save(net, os.path.join(out, "whole_module.pt"))
    write_expected(out, "whole_module.pt", sd, "torch_zip")

    # A malicious pickle: plain pickle would run shell commands. The reader must only record them.
    marker = os.path.join(out, "PWNED")
    evil = {"w": torch.arange(4, dtype=torch.float32), "evil": Evil(marker), "eval": EvilEval(marker + "2")}
    torch.save(evil, os.path.join(out, "malicious.pt"))
    write_expected(out, "malicious.pt", {"w": evil["w"]}, "torch_zip", skipped=["posix.system", "__builtin__.eval"])

    # Hand-built archive (Python's zipfile, no torch.save): a protocol-4 data.pkl that calls exec and
    # subprocess.Popen at load time.
    class Exec:
        def __reduce__(self):
            return (exec, (f"open({marker + '3'!r}, 'w').close()",))

    import subprocess

    class Popen:
        def __reduce__(self):
            return (subprocess.Popen, (["touch", marker + "4"],))

    with zipfile.ZipFile(os.path.join(out, "crafted_exec.pt"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"run": Exec(), "popen": Popen(), "n": 1}, protocol=4))
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    write_expected(out, "crafted_exec.pt", {}, "torch_zip", skipped=["builtins.exec", "subprocess.Popen"])

    # Legacy (pre-1.6) format, a big-endian claim, a missing record: readers must give clear errors.
    torch.save(sd, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(os.path.join(out, "plain.pt")) as src:
        names = src.namelist()
        with zipfile.ZipFile(os.path.join(out, "big_endian.pt"), "w", zipfile.ZIP_STORED) as dst:
            for n in names:
                data = src.read(n)
                dst.writestr(n, b"big" if n.endswith("/byteorder") else data)
        data_records = [n for n in names if "/data/" in n]
        with zipfile.ZipFile(os.path.join(out, "missing_record.pt"), "w", zipfile.ZIP_STORED) as dst:
            for n in names:
                if n != data_records[-1]:
                    dst.writestr(n, src.read(n))

    # --- TorchScript ---------------------------------------------------------------------------------
    scripted = torch.jit.script(Net())
    scripted.save(os.path.join(out, "scripted.pt"))
    script_sd = {k: v.detach().clone() for k, v in scripted.state_dict().items()}
    write_expected(out, "scripted.pt", script_sd, "torchscript")
    # Traced, half precision, as OpenAI's CLIP .pt files are (torch.jit.trace, fp16 weights).
    traced = torch.jit.trace(Net().eval(), torch.randn(2, 3, 8, 8))
    traced = traced.half()
    traced.save(os.path.join(out, "traced_half.pt"))
    traced_sd = {k: v.detach().clone() for k, v in traced.state_dict().items()}
    write_expected(out, "traced_half.pt", traced_sd, "torchscript")

    # --- npy -----------------------------------------------------------------------------------------
    arrays = {
        "f32": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
        "f64": np.linspace(-1, 1, 5),
        "f16": np.array([[1.5, -2.0], [0.0, 65504.0]], dtype=np.float16),
        "i64": np.array([-(2**62), 3], dtype=np.int64),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "u8": np.arange(10, dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 2), dtype=np.float32),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
    }
    for name, a in arrays.items():
        np.save(os.path.join(out, f"npy_{name}.npy"), a)
        write_expected(out, f"npy_{name}.npy", {"array": torch.from_numpy(a.copy(order="C"))}, "npy")
    np.save(os.path.join(out, "npy_bigendian.npy"), np.arange(3, dtype=">f4"))

    fixture_cli.finish(out)


if __name__ == "__main__":
    main()
