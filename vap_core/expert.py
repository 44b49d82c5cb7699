"""The VAP expert: its own embedders and one expert block beside each of some backbone layers.

It has no output head: only the backbone's output is used.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .checkpoint import TensorSource, load_strict
from .config import WanConfig
from .errors import IncompatibleExpertError, NotACheckpointError
from .layers import StreamEmbedders, WanBlock
from .released import read_released

FORMAT = "vap-expert/1"


class VAPExpert(StreamEmbedders):
    def __init__(self, cfg: WanConfig, layers, ops=nn, device=None, dtype=None):
        super().__init__(cfg, ops, device, dtype)
        self.layers = tuple(sorted(int(i) for i in layers))
        self.blocks = nn.ModuleDict({str(i): WanBlock(cfg, ops, device, dtype) for i in self.layers})

    def check_fits(self, backbone: WanConfig, where: str = "the expert"):
        """Raise IncompatibleExpertError unless this expert can run beside `backbone`."""
        cfg = self.cfg
        problems = [f"{what} {mine} vs the backbone's {theirs}" for what, mine, theirs in (
            ("width", cfg.dim, backbone.dim), ("heads", cfg.num_heads, backbone.num_heads),
            ("text width", cfg.text_dim, backbone.text_dim), ("CLIP width", cfg.image_dim, backbone.image_dim),
            ("input channels", cfg.in_dim, backbone.in_dim), ("patch size", cfg.patch_size, backbone.patch_size),
            ("depth trained with", cfg.num_layers, backbone.num_layers)) if mine != theirs]
        outside = [i for i in self.layers if i >= backbone.num_layers]
        if outside:
            problems.append(f"expert layers {outside} beyond the backbone's {backbone.num_layers} layers")
        if problems:
            raise IncompatibleExpertError(
                f"{where} does not fit this backbone: {'; '.join(problems)}. VAP's released expert pairs "
                "with Wan 2.1 I2V 14B (480P); load that backbone, or the expert trained for yours.")


def expert_metadata(cfg: WanConfig, layers, source: str, fingerprint: str, dtype_name: str) -> dict:
    return {"format": FORMAT, "config": cfg.to_json(), "layers": json.dumps(sorted(layers)),
            "source": source, "backbone_fingerprint": fingerprint, "dtype": dtype_name}


def read_expert_file(path) -> tuple[WanConfig, tuple, dict, TensorSource]:
    """Config, layer indices, metadata and tensors of the pack's expert-only file."""
    tensors = TensorSource([path])
    meta = tensors.metadata
    if meta.get("format") != FORMAT:
        hint = (" It looks like a released checkpoint file: load its folder with from_checkpoint, or "
                "export the expert with `python -m vap_core.export`."
                if any("_mot_ref" in n for n in tensors.names()) else
                " Export one from the released checkpoint with `python -m vap_core.export SRC DST`.")
        raise NotACheckpointError(f"{path} is not a VAP expert file (no '{FORMAT}' metadata).{hint}")
    return WanConfig.from_json(meta["config"]), tuple(json.loads(meta["layers"])), meta, tensors


def load_expert_file(path, dtype=torch.float32, ops=nn, progress=None) -> tuple[VAPExpert, dict]:
    cfg, layers, meta, tensors = read_expert_file(path)
    expert = VAPExpert(cfg, layers, ops, device="meta")
    load_strict(expert, tensors, {n: n for n in tensors.names()}, str(Path(path)), dtype, progress)
    return expert, meta


def load_expert(path, dtype=torch.float32, ops=nn, progress=None) -> tuple[VAPExpert, dict]:
    """The pack's expert file, or the expert of a released checkpoint (a file of its transformer/
    folder, its index json, or the folder). Only expert tensors are read. Returns (expert, metadata)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        names, meta = _peek(path)
        if meta.get("format") == FORMAT:
            return load_expert_file(path, dtype, ops, progress)
        if not any("_mot_ref" in n for n in names):
            raise NotACheckpointError(f"{path} is not a VAP expert: it has neither the pack's expert metadata nor "
                                      f"any *_mot_ref tensor{_looks_like(names)}.")
    rel = read_released(path)
    expert = VAPExpert(rel.cfg, rel.layers, ops, device="meta")
    expert.check_fits(rel.cfg, f"{path} (block_idx_with_mot_ref={list(rel.layers)})")
    load_strict(expert, rel.tensors, rel.expert, f"{path} (expert)", dtype, progress)
    return expert, expert_metadata(rel.cfg, rel.layers, Path(rel.src).resolve().name, rel.fingerprint(),
                                   str(dtype).removeprefix("torch."))


def _peek(path: Path) -> tuple[list, dict]:
    tensors = TensorSource([path])
    return tensors.names(), tensors.metadata


def _looks_like(names) -> str:
    if any(n.endswith("head.modulation") for n in names):
        return " (it is a Wan diffusion model: load that with the stock Load Diffusion Model node)"
    if any(n.startswith(("encoder.", "decoder.")) for n in names):
        return " (it looks like a VAE)"
    return ""
