"""What differs between hosts: RoPE application, attention kernel, raw-parameter casting, and the
backbone's cross-attention call. `TORCH_HOST` is plain PyTorch; ComfyUI's binding builds its own."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from einops import rearrange

from .rope import apply_rope
from .wan_layer import i2v_cross_attention


@dataclass(frozen=True)
class Host:
    rope: Callable  # (x (B, L, heads, head_dim), freqs) -> x rotated
    attention: Callable  # (q, k, v (B, L, heads*head_dim), heads) -> (B, Lq, heads*head_dim)
    cast: Callable  # (parameter, dtype, device) -> tensor
    backbone_cross_attn: Callable  # (block, x, context, context_img_len) -> tensor


def sdpa_attention(q, k, v, heads):
    q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=heads) for t in (q, k, v))
    return rearrange(F.scaled_dot_product_attention(q, k, v), "b h l d -> b l (h d)")


def _torch_cast(param, dtype, device):
    return param.to(dtype=dtype, device=device)


def _torch_backbone_cross_attn(block, x, context, context_img_len):
    return i2v_cross_attention(block.cross_attn, x, context, context_img_len, sdpa_attention, block.num_heads)


TORCH_HOST = Host(rope=apply_rope, attention=sdpa_attention, cast=_torch_cast,
                  backbone_cross_attn=_torch_backbone_cross_attn)
