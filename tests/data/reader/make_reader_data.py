#!/usr/bin/python3
"""Writes the reference data of the checkpoint reader's tests (run once, by
hand, with Debian's python3-torch; nothing at test time needs Python).

- checkpoints.json: for every fixture checkpoint under tests/data, what
  torch.load sees: each tensor's key (nested dicts joined with '.'), dtype
  (numpy name), shape, and spot values (the first three elements in C order,
  the last one, and the float64 sum).
- special.pt: torch.save of a state dict with the cases a reader gets wrong:
  a non-contiguous view with an offset, tensors that share one storage, a
  Parameter, float16/bfloat16/float64/int64/int32/int16/int8/uint8/bool
  tensors, a 0-d tensor, an empty tensor, a nested dict of tensors, and
  nested non-tensor objects (argparse.Namespace, lists, None, floats, bytes,
  big ints).  special.json lists every tensor with all its values.
- small.safetensors (+ .json): the same kinds of tensors in safetensors.
"""
import argparse
import collections
import json
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)


def flatten(obj, prefix=""):
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, (str, int)):
                out += flatten(v, prefix + str(k) + ".")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += flatten(v, prefix + str(i) + ".")
    elif isinstance(obj, torch.Tensor):
        out.append((prefix[:-1], obj))
    return out


NP_NAME = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
           torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32",
           torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}


def describe(t, all_values=False):
    flat = t.detach().reshape(-1).to(torch.float64)
    d = {"dtype": NP_NAME[t.dtype], "shape": list(t.shape)}
    if all_values:
        d["values"] = flat.tolist()
    else:
        d["first"] = flat[:3].tolist()
        d["last"] = flat[-1:].tolist()
        d["sum"] = float(flat.sum()) if flat.numel() else 0.0
    return d


def checkpoints():
    out = {}
    for root, _, files in os.walk(DATA):
        for f in sorted(files):
            if not f.endswith((".ckpt", ".pt", ".pth", ".bin")) or "reader" in root:
                continue
            path = os.path.join(root, f)
            sd = torch.load(path, map_location="cpu")
            rel = os.path.relpath(path, DATA)
            out[rel] = [dict(key=k, **describe(t)) for k, t in flatten(sd)]
    with open(os.path.join(HERE, "checkpoints.json"), "w") as fh:
        json.dump(out, fh, indent=0, sort_keys=True)


def special():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    shared = torch.arange(24, dtype=torch.float32)
    sd = collections.OrderedDict()
    sd["view.transposed"] = base.t()                     # strides (1, 8)
    sd["view.sliced"] = base[2:5, 1::3]                  # offset 17, strides (8, 3)
    sd["shared.a"] = shared.view(4, 6)
    sd["shared.b"] = shared[6:18].view(3, 4)             # same storage, offset 6
    sd["param"] = torch.nn.Parameter(torch.randn(3, 2, generator=g))
    sd["half"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["double"] = torch.randn(2, 2, generator=g).double()
    sd["long"] = torch.tensor([[-3, 2**40], [7, -2**62]], dtype=torch.int64)
    sd["int"] = torch.tensor([1, -2, 2**30], dtype=torch.int32)
    sd["short"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["char"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["byte"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 4)
    nested = {"inner": {"w": torch.ones(2, 2) * 3, "n": 5}, "lst": [torch.full((2,), 4.0), "x"]}
    ckpt = {
        "state_dict": sd,
        "nested": nested,
        "hyper_parameters": argparse.Namespace(lr=1e-4, name="tiny", layers=[1, 2, 3], extra=None),
        "epoch": 7,
        "big": 2**70,
        "blob": b"\x00\x01bytes",
        "pi": 3.14159,
        "flags": (True, False, None),
    }
    path = os.path.join(HERE, "special.pt")
    torch.save(ckpt, path)
    back = torch.load(path)
    ref = [dict(key=k, **describe(t, True)) for k, t in flatten(back)]
    with open(os.path.join(HERE, "special.json"), "w") as fh:
        json.dump(ref, fh, indent=0)


def safetensors():
    g = torch.Generator().manual_seed(1)
    tensors = collections.OrderedDict([
        ("a.weight", torch.randn(3, 4, generator=g)),
        ("a.bias", torch.randn(4, generator=g).half()),
        ("b", torch.tensor([[1, -2], [3, 2**40]], dtype=torch.int64)),
        ("c", torch.tensor([True, False])),
        ("d", torch.randn(2, generator=g).bfloat16()),
    ])
    code = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.bool: "BOOL", torch.bfloat16: "BF16"}
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[k] = {"dtype": code[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(HERE, "small.safetensors"), "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    ref = [dict(key=k, **describe(t, True)) for k, t in tensors.items()]
    with open(os.path.join(HERE, "small.safetensors.json"), "w") as fh:
        json.dump(ref, fh, indent=0)


if __name__ == "__main__":
    checkpoints()
    special()
    safetensors()
