"""A plain-PyTorch Wan 2.1 image-to-video transformer (the frozen backbone), for standalone use."""
from __future__ import annotations

import math
import re

import torch
from einops import rearrange
from torch import nn

from .checkpoint import TensorSource
from .loading import load_strict
from .config import WanConfig
from .errors import NotACheckpointError
from .joint_layer import norm32
from .layers import Head, StreamEmbedders, WanBlock

_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


class WanI2V(StreamEmbedders):
    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__(cfg, ops, device, dtype)
        self.blocks = nn.ModuleList(WanBlock(cfg, ops, device, dtype) for _ in range(cfg.num_layers))
        self.head = Head(cfg, ops, device, dtype)

    def output(self, x, temb, grid, host):
        """Modulated final norm, projection and unpatchify: tokens -> (B, out_dim, F, H, W)."""
        table = host.cast(self.head.modulation, torch.float32, x.device)
        shift, scale = (table + temb.float().unsqueeze(1)).chunk(2, dim=1)
        x = self.head.head((norm32(x, self.cfg.eps) * (1 + scale) + shift).to(x.dtype))
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        return rearrange(x, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ph, pw=pw)


def wan_config_from_tensors(tensors: TensorSource, prefix: str, num_heads: int | None, where: str) -> WanConfig:
    """Sizes of a Wan 2.1 I2V file in ComfyUI's layout, read from its tensor shapes."""
    def shape(name):
        return tensors.shape(prefix + name)

    needed = ("patch_embedding.weight", "head.modulation", "img_emb.proj.1.weight", "blocks.0.ffn.0.weight")
    absent = [n for n in needed if prefix + n not in tensors]
    if absent:
        raise NotACheckpointError(
            f"{where} is not a Wan 2.1 image-to-video model in ComfyUI's layout (no {', '.join(absent)}). "
            "Use Wan2.1-I2V-14B-480P (e.g. wan2.1_i2v_480p_14B_bf16.safetensors).")
    dim, in_dim, *patch = shape("patch_embedding.weight")
    block_ids = {int(m.group(1)) for n in tensors.names() if (m := re.match(re.escape(prefix) + r"blocks\.(\d+)\.", n))}
    return WanConfig(
        dim=dim, num_heads=num_heads or dim // 128, ffn_dim=shape("blocks.0.ffn.0.weight")[0],
        num_layers=len(block_ids), in_dim=in_dim, out_dim=shape("head.head.weight")[0] // math.prod(patch),
        text_dim=shape("text_embedding.0.weight")[1], image_dim=shape("img_emb.proj.1.weight")[0],
        freq_dim=shape("time_embedding.0.weight")[1], patch_size=tuple(patch))


def load_wan_file(path, dtype=torch.float32, num_heads: int | None = None, ops=nn, check=None) -> WanI2V:
    """Load a Wan 2.1 I2V file in ComfyUI's layout. num_heads defaults to ComfyUI's rule dim // 128.
    `check(cfg)` runs on the sizes read from the tensor shapes, before any weight is read."""
    tensors = TensorSource([path])
    names = tensors.names()
    prefix = next((p for p in _PREFIXES if names and all(n.startswith(p) for n in names)), "")
    cfg = wan_config_from_tensors(tensors, prefix, num_heads, str(path))
    if check is not None:
        check(cfg)
    model = WanI2V(cfg, ops, device="meta")
    load_strict(model, tensors, {n[len(prefix):]: n for n in names}, str(path), dtype)
    return model
