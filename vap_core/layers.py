"""Wan 2.1 layers as parameter containers, built from an injected `operations` namespace.

`operations` is `torch.nn` by default; ComfyUI passes `comfy.ops` so fp8 weights and low-VRAM
streaming work. Module and parameter names follow the original Wan layout (the one ComfyUI uses).
The computation lives in `wan_layer.py`, so a host can run it over its own backbone modules.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import WanConfig


class SelfAttention(nn.Module):
    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.num_heads = cfg.num_heads
        self.q = ops.Linear(cfg.dim, cfg.dim, **kw)
        self.k = ops.Linear(cfg.dim, cfg.dim, **kw)
        self.v = ops.Linear(cfg.dim, cfg.dim, **kw)
        self.o = ops.Linear(cfg.dim, cfg.dim, **kw)
        self.norm_q = ops.RMSNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True, **kw)
        self.norm_k = ops.RMSNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True, **kw)


class I2VCrossAttention(SelfAttention):
    """Cross-attention to text tokens plus, through its own keys/values, CLIP image tokens."""

    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__(cfg, ops, device, dtype)
        kw = {"device": device, "dtype": dtype}
        self.k_img = ops.Linear(cfg.dim, cfg.dim, **kw)
        self.v_img = ops.Linear(cfg.dim, cfg.dim, **kw)
        self.norm_k_img = ops.RMSNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True, **kw)


class WanBlock(nn.Module):
    """One transformer layer: the backbone's, or the expert block that runs beside it."""

    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.num_heads = cfg.num_heads
        self.eps = cfg.eps
        self.self_attn = SelfAttention(cfg, ops, device, dtype)
        self.norm3 = ops.LayerNorm(cfg.dim, cfg.eps, elementwise_affine=True, **kw)
        self.cross_attn = I2VCrossAttention(cfg, ops, device, dtype)
        self.ffn = nn.Sequential(
            ops.Linear(cfg.dim, cfg.ffn_dim, **kw), nn.GELU(approximate="tanh"), ops.Linear(cfg.ffn_dim, cfg.dim, **kw))
        self.modulation = nn.Parameter(torch.empty(1, 6, cfg.dim, **kw))


class ImageEmbedding(nn.Module):
    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.proj = nn.Sequential(
            ops.LayerNorm(cfg.image_dim, **kw), ops.Linear(cfg.image_dim, cfg.image_dim, **kw), nn.GELU(),
            ops.Linear(cfg.image_dim, cfg.dim, **kw), ops.LayerNorm(cfg.dim, **kw))


class Head(nn.Module):
    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.head = ops.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size), **kw)
        self.modulation = nn.Parameter(torch.empty(1, 2, cfg.dim, **kw))


class StreamEmbedders(nn.Module):
    """Patch, time, text and CLIP-image embedders: what both the backbone and the expert have."""

    def __init__(self, cfg: WanConfig, ops=nn, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.cfg = cfg
        self.patch_embedding = ops.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, **kw)
        self.text_embedding = nn.Sequential(
            ops.Linear(cfg.text_dim, cfg.dim, **kw), nn.GELU(approximate="tanh"), ops.Linear(cfg.dim, cfg.dim, **kw))
        self.time_embedding = nn.Sequential(
            ops.Linear(cfg.freq_dim, cfg.dim, **kw), nn.SiLU(), ops.Linear(cfg.dim, cfg.dim, **kw))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(cfg.dim, cfg.dim * 6, **kw))
        self.img_emb = ImageEmbedding(cfg, ops, device, dtype)
