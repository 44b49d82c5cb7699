"""The VAP expert: its own embedders and one expert block beside each of some backbone layers.

It has no output head: only the backbone's output is used.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import DTYPES, TensorSource
from .cog_config import CogConfig
from .cog_modules import CogExpert
from .config import WanConfig
from .embedding import EmbeddedReference, embed_reference
from .errors import IncompatibleExpertError, NotACheckpointError, check_fit
from .layers import StreamEmbedders, WanBlock
from .loading import load_strict
from .released import FAMILIES, Released, read_released
from .wan_layer import Stream, joint_layer, missing_block_attributes

DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

FORMAT = "vap-expert/1"


class VAPExpert(StreamEmbedders):
    """The VAP expert of Wan 2.1 I2V."""
    same_length = False  # a reference of any length

    def __init__(self, cfg: WanConfig, layers, ops=nn, device=None, dtype=None):
        super().__init__(cfg, ops, device, dtype)
        self.layers = tuple(sorted(int(i) for i in layers))
        self.blocks = nn.ModuleDict({str(i): WanBlock(cfg, ops, device, dtype) for i in self.layers})

    def check_fits(self, backbone: WanConfig, where: str = "the expert"):
        """Raise IncompatibleExpertError unless this expert can run beside `backbone` (a config)."""
        if backbone.family != "wan":
            raise IncompatibleExpertError(
                f"{where} is a Wan 2.1 expert but the backbone is CogVideoX: load Wan 2.1 I2V 14B for it, or the "
                "CogVideoX expert for this backbone.")
        cfg = self.cfg
        check_fit(where, (
            ("width", cfg.dim, backbone.dim), ("heads", cfg.num_heads, backbone.num_heads),
            ("text width", cfg.text_dim, backbone.text_dim), ("CLIP width", cfg.image_dim, backbone.image_dim),
            ("input channels", cfg.in_dim, backbone.in_dim), ("patch size", cfg.patch_size, backbone.patch_size),
            ("depth trained with", cfg.num_layers, backbone.num_layers)), self.layers, backbone.num_layers,
            "VAP's released expert pairs with Wan 2.1 I2V 14B (480P; width 5120, where a 1.3B model has 1536): load "
            "that backbone, or the expert trained for yours.")

    def embed_reference(self, ref_x, ref_context, ref_clip_fea, dtype, ref_t=None) -> EmbeddedReference:
        return embed_reference(self, ref_x, ref_context, ref_clip_fea, dtype, ref_t)

    @staticmethod
    def reference_stream(ref: EmbeddedReference, freqs, t) -> Stream:
        return Stream(ref.tokens, ref.e, freqs, ref.context, ref.context_img_len)  # its timestep was embedded with it

    def joint_layer(self, index, block, target, references, host):
        return joint_layer(block, self.blocks[str(index)], target, references, host)

    missing_block_attributes = staticmethod(missing_block_attributes)


EXPERTS = {"wan": VAPExpert, "cog": CogExpert}


def expert_metadata(cfg, layers, source: str, fingerprint: str, dtype_name: str) -> dict:
    return {"format": FORMAT, "family": cfg.family, "config": cfg.to_json(), "layers": json.dumps(sorted(layers)),
            "source": source, "backbone_fingerprint": fingerprint, "dtype": dtype_name}


@dataclass(kw_only=True)
class ExpertSource:
    """Where an expert's tensors are, with its sizes and layers; no tensor data read yet."""
    cfg: WanConfig | CogConfig
    layers: tuple
    tensors: TensorSource
    names: dict  # module parameter name -> tensor name in the file(s)
    where: str
    metadata: Callable  # (dtype name) -> the metadata of an expert file stored in that dtype

    def empty(self, ops=nn):
        """The expert's modules on the meta device (nothing allocated), checked against its own config."""
        expert = EXPERTS[self.cfg.family](self.cfg, self.layers, ops, device="meta")
        expert.check_fits(self.cfg, self.where)
        return expert

    def load(self, dtype=torch.float32, ops=nn, progress=None):
        return load_strict(self.empty(ops), self.tensors, self.names, self.where, dtype, progress)


def expert_source(src) -> ExpertSource:
    """The pack's expert file, or the expert of a released checkpoint (a Released, a file of its
    transformer/ folder, its index json, or the folder). Each file is opened once."""
    if isinstance(src, Released):
        return _released_source(src)
    path = Path(src)
    opened = None
    if path.is_file() and path.suffix == ".safetensors":
        opened = TensorSource([path])
        if opened.metadata.get("format") == FORMAT:
            return _file_source(path, opened)
        if not any("_mot_ref" in n for n in opened.names()):
            raise NotACheckpointError(f"{path} is not a VAP expert: it has neither the pack's expert metadata nor "
                                      f"any *_mot_ref tensor{_looks_like(opened.names())}.")
    return _released_source(read_released(path, opened))


def _file_source(path, tensors: TensorSource) -> ExpertSource:
    meta = tensors.metadata
    config_class = FAMILIES[meta.get("family", "wan")].config  # files of the pack before CogVideoX are Wan's
    return ExpertSource(cfg=config_class.from_json(meta["config"]), layers=tuple(json.loads(meta["layers"])),
                        tensors=tensors, names={n: n for n in tensors.names()}, where=str(path),
                        metadata=lambda _dtype_name: meta)  # an exported file tells its own, whatever it loads as


def _released_source(rel: Released) -> ExpertSource:
    def metadata(dtype_name):
        return expert_metadata(rel.cfg, rel.layers, Path(rel.src).resolve().name, rel.fingerprint(), dtype_name)
    return ExpertSource(cfg=rel.cfg, layers=rel.layers, tensors=rel.tensors, names=rel.expert_names,
                        where=f"{rel.src} (expert; block_idx_with_mot_ref={list(rel.layers)})", metadata=metadata)


def load_expert(src, dtype=torch.float32, ops=nn, progress=None) -> tuple:
    """Load an expert from any source expert_source takes. Returns (expert, metadata)."""
    source = expert_source(src)
    return source.load(dtype, ops, progress), source.metadata(DTYPE_NAMES[dtype])


def _looks_like(names) -> str:
    if any(n.endswith("head.modulation") for n in names):
        return " (it is a Wan diffusion model: load that with the stock Load Diffusion Model node)"
    if any(n.startswith(("encoder.", "decoder.")) for n in names):
        return " (it looks like a VAE)"
    return ""
