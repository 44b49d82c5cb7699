"""A fingerprint of the backbone an expert was trained with, to detect a mismatched backbone later.

It summarises raw vectors (modulation tables) that fp8, GGUF and scaled files keep in high
precision, so the same backbone matches whatever dtype its matrices are stored in.
"""
from __future__ import annotations

import json

import torch

# per family: vectors (kept in high precision by every storage format) in ComfyUI's layout
TENSORS = {"wan": ("head.modulation", "blocks.0.modulation"),
           "cog": ("norm_final.weight", "blocks.0.norm1.norm.weight")}
RTOL, ATOL = 2e-2, 1e-3
FP8_RTOL = 0.08  # fp8-stored backbones round their modulation tables by up to ~6%


def _summary(t: torch.Tensor) -> list[float]:
    t = t.detach().float().to(torch.float64).flatten()
    return [float(t.mean()), float(t.abs().mean())] + [float(v) for v in t[:8]]


def backbone_fingerprint(read, num_layers: int, dim: int, family: str = "wan") -> str:
    """JSON fingerprint; `read(name)` returns the backbone tensor of that name (ComfyUI's layout)."""
    return json.dumps({"num_layers": num_layers, "dim": dim,
                       "tensors": {name: _summary(read(name)) for name in TENSORS[family]}}, sort_keys=True)


def fingerprint_matches(recorded: str, read, num_layers: int, dim: int) -> bool:
    """Whether the backbone `read(name)` gives is the recorded one; a backbone stored in fp8 gets FP8_RTOL."""
    want = json.loads(recorded)
    if want["num_layers"] != num_layers or want["dim"] != dim:
        return False
    tensors = {name: read(name) for name in want["tensors"]}
    rtol = FP8_RTOL if any(t.dtype.itemsize == 1 for t in tensors.values()) else RTOL
    return all(torch.allclose(torch.tensor(_summary(tensors[name]), dtype=torch.float64),
                              torch.tensor(values, dtype=torch.float64), rtol=rtol, atol=ATOL)
               for name, values in want["tensors"].items())
