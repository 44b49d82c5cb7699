"""The computation of one Wan 2.1 layer: plain (backbone only) or joint (backbone + expert block).

Written against the Wan block layout (BLOCK_ATTRIBUTES) and a `Host` (see host.py), so that the
ComfyUI binding runs this same code over ComfyUI's own blocks, ops and attention kernel.
Norms and modulation are computed in float32, as the paper's implementation does.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

# What this module reads from a block: vap_core's WanBlock and ComfyUI's WanAttentionBlock both
# have these (tests check ComfyUI's), and a host whose blocks lack one is refused up front.
BLOCK_ATTRIBUTES = (
    "num_heads", "eps", "modulation", "norm3", "ffn",
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "self_attn.norm_q", "self_attn.norm_k",
    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "cross_attn.norm_q", "cross_attn.norm_k",
    "cross_attn.k_img", "cross_attn.v_img", "cross_attn.norm_k_img",
)


def missing_attributes(block, paths) -> list[str]:
    """Which of the dotted attribute paths a block lacks."""
    def has(obj, path):
        for name in path.split("."):
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return [path for path in paths if not has(block, path)]


def missing_block_attributes(block) -> list[str]:
    return missing_attributes(block, BLOCK_ATTRIBUTES)


@dataclass
class Stream:
    """One stream of tokens as a layer sees it."""
    tokens: torch.Tensor  # (B, L, dim)
    e: torch.Tensor  # (B, 6, dim) time input of the layer's modulation
    freqs: object  # its RoPE rotations, in the host's format
    context: torch.Tensor  # (B, n_img + n_txt, dim) cross-attention context: CLIP image tokens, then text
    context_img_len: int


def norm32(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x.float(), (x.shape[-1],), eps=eps)


def modulation(block, e: torch.Tensor, host) -> tuple:
    """The six (B, 1, dim) float32 shift/scale/gate vectors of a layer for time input e (B, 6, dim)."""
    table = host.cast(block.modulation, torch.float32, e.device)
    return (table + e.float()).chunk(6, dim=1)


def attention_inputs(block, x, mod, freqs, host):
    """q, k, v (B, L, dim) of a layer's self-attention: modulated norm, projections, RMS norm, RoPE."""
    h = torch.addcmul(mod[0], norm32(x, block.eps), 1 + mod[1]).to(x.dtype)
    sa = block.self_attn
    b, s = h.shape[:2]
    q = host.rope(sa.norm_q(sa.q(h)).view(b, s, block.num_heads, -1), freqs).flatten(2)
    k = host.rope(sa.norm_k(sa.k(h)).view(b, s, block.num_heads, -1), freqs).flatten(2)
    return q, k, sa.v(h)


def attention_outputs(block, x, y, mod, cross_attn):
    """The rest of the layer after self-attention: output projection and gate, cross-attention, FFN."""
    x = torch.addcmul(x.float(), block.self_attn.o(y).float(), mod[2]).to(x.dtype)
    x = x + cross_attn(block.norm3(x))  # in x's dtype: a host's norm may hold low-precision weights
    y = block.ffn(torch.addcmul(mod[3], norm32(x, block.eps), 1 + mod[4]).to(x.dtype))
    return torch.addcmul(x.float(), y.float(), mod[5]).to(x.dtype)


def i2v_cross_attention(attn, x, context, context_img_len, attention, heads):
    """Wan I2V cross-attention: to the text tokens and, with separate keys/values, the CLIP tokens."""
    img, text = context[:, :context_img_len], context[:, context_img_len:]
    q = attn.norm_q(attn.q(x))
    y = attention(q, attn.norm_k(attn.k(text)), attn.v(text), heads)
    y = y + attention(q, attn.norm_k_img(attn.k_img(img)), attn.v_img(img), heads)
    return attn.o(y)


def _target_outputs(block, target: Stream, y, mod, host):
    return attention_outputs(block, target.tokens, y, mod,
                             lambda h: host.backbone_cross_attn(block, h, target.context, target.context_img_len))


def plain_layer(block, target: Stream, host) -> Stream:
    """A backbone layer without an expert block (plain Wan): the target, updated."""
    mod = modulation(block, target.e, host)
    q, k, v = attention_inputs(block, target.tokens, mod, target.freqs, host)
    return replace(target, tokens=_target_outputs(block, target, host.attention(q, k, v, block.num_heads), mod, host))


def joint_layer(block, expert_block, target: Stream, references: list[Stream], host):
    """A backbone layer and its expert block: each stream its own norms, modulation and q/k/v (the
    references through the expert block), ONE full attention over [target ; reference 1 ; ... ;
    reference N], then each stream its own output, cross-attention and FFN.
    Returns (the target, the references), updated."""
    streams = [target, *references]
    mods = [modulation(block if s is target else expert_block, s.e, host) for s in streams]
    qkv = [attention_inputs(block if s is target else expert_block, s.tokens, m, s.freqs, host)
           for s, m in zip(streams, mods)]
    q, k, v = (torch.cat(parts, 1) for parts in zip(*qkv))
    del qkv
    ys = host.attention(q, k, v, block.num_heads).split([s.tokens.shape[1] for s in streams], dim=1)
    del q, k, v
    out = _target_outputs(block, target, ys[0], mods[0], host)
    refs = [attention_outputs(expert_block, s.tokens, y, m,
                              lambda h, s=s: i2v_cross_attention(expert_block.cross_attn, h, s.context, s.context_img_len,
                                                                 host.attention, expert_block.num_heads))
            for s, y, m in zip(references, ys[1:], mods[1:])]
    return replace(target, tokens=out), [replace(s, tokens=r) for s, r in zip(references, refs)]
