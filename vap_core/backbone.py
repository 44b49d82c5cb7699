"""A plain-PyTorch Wan 2.1 image-to-video transformer (the frozen backbone), for standalone use."""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .checkpoint import TensorSource
from .config import WanConfig
from .embedding import embed_stream
from .errors import InputError, NotACheckpointError, broadcast_rows
from .layers import Head, StreamEmbedders, WanBlock
from .loading import load_strict
from .rope import rope_table
from .wan_layer import Stream, norm32, plain_layer

_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


class WanI2V(StreamEmbedders):
    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__(cfg, ops, device, dtype)
        self.blocks = nn.ModuleList(WanBlock(cfg, ops, device, dtype) for _ in range(cfg.num_layers))
        self.head = Head(cfg, ops, device, dtype)

    def caller(self) -> "WanI2V":
        """What model.run_call asks of a backbone: this module's own methods."""
        return self

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.blocks[0].self_attn.q.weight.dtype

    def check_target(self, x, context, clip_fea) -> int:
        cfg = self.cfg
        if x.ndim != 5 or x.shape[1] != cfg.in_dim:
            raise InputError(
                f"x has shape {tuple(x.shape)}; expected (batch, {cfg.in_dim}, frames, height, width): 16 noisy "
                "latent channels, 4 mask channels and 16 channels of the first-frame latent.")
        if any(s % p for s, p in zip(x.shape[2:], cfg.patch_size)):
            raise InputError(f"x's frames/height/width {tuple(x.shape[2:])} must be multiples of the patch size "
                             f"{cfg.patch_size}; resize the video (pixels to a multiple of 16).")
        if clip_fea is None:
            raise InputError("Wan 2.1 I2V needs clip_fea: the CLIP vision tokens of the start image.")
        b = x.shape[0]
        _check_tokens("context", context, b, cfg.text_dim, cfg.text_len)
        _check_tokens("clip_fea", clip_fea, b, cfg.image_dim)
        return b

    def check_reference(self, b, ref_x, ref_context, ref_clip_fea):
        """The reference's inputs checked, with its rows broadcast to the target's b."""
        cfg = self.cfg
        if ref_context is None or ref_clip_fea is None:
            raise InputError("a reference needs ref_context (its caption) and ref_clip_fea (CLIP tokens of its "
                             "first frame) as well as ref_x.")
        if ref_x.ndim != 5 or ref_x.shape[1] != cfg.in_dim:
            raise InputError(f"ref_x has shape {tuple(ref_x.shape)}; expected (batch, {cfg.in_dim}, frames, "
                             "height, width), the same 36-channel layout as x.")
        if any(s % p for s, p in zip(ref_x.shape[2:], cfg.patch_size)):
            raise InputError(f"ref_x's frames/height/width {tuple(ref_x.shape[2:])} must be multiples of the patch "
                             f"size {cfg.patch_size}.")
        ref_x = broadcast_rows("ref_x", ref_x, b)
        ref_clip_fea = broadcast_rows("ref_clip_fea", ref_clip_fea, b)
        _check_tokens("ref_context", ref_context, b, cfg.text_dim, cfg.text_len)
        _check_tokens("ref_clip_fea", ref_clip_fea, b, cfg.image_dim)
        return ref_x, self.pad(ref_context), ref_clip_fea

    def pad(self, context):
        """Text zero-padded to the text length (512), as Wan's T5 gives it."""
        n = self.cfg.text_len - context.shape[1]
        return F.pad(context, (0, 0, 0, n)) if n > 0 else context

    def token_grid(self, x) -> tuple:
        return tuple(s // p for s, p in zip(x.shape[2:], self.cfg.patch_size))

    def rope(self, grid, t_start, device):
        return rope_table(self.cfg.head_dim, grid, t_start, device=device)

    def embed_target(self, x, t, context, clip_fea, dtype, freqs):
        tokens, temb, e, ctx = embed_stream(self, x, t, self.pad(context), clip_fea, dtype)
        return Stream(tokens, e, freqs, ctx, clip_fea.shape[1]), temb

    plain_layer = staticmethod(plain_layer)

    def output(self, target: Stream, temb, grid, host):
        """Modulated final norm, projection and unpatchify: tokens -> (B, out_dim, F, H, W)."""
        x = target.tokens
        table = host.cast(self.head.modulation, torch.float32, x.device)
        shift, scale = (table + temb.float().unsqueeze(1)).chunk(2, dim=1)
        x = self.head.head((norm32(x, self.cfg.eps) * (1 + scale) + shift).to(x.dtype))
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        return rearrange(x, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ph, pw=pw)


def _check_tokens(name, tensor, b, width, max_len=None):
    if tensor.ndim != 3 or tensor.shape[0] != b or tensor.shape[2] != width:
        raise InputError(f"{name} has shape {tuple(tensor.shape)}; expected ({b}, tokens, {width}).")
    if max_len is not None and tensor.shape[1] > max_len:
        raise InputError(f"{name} has {tensor.shape[1]} tokens; the model takes at most {max_len}.")


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
