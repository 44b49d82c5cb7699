"""The computation of one layer, for a plain backbone layer and for a joint backbone + expert layer.

Written against module names (the Wan layout) and a `Host` (see host.py), so that the ComfyUI
binding runs this same code over ComfyUI's own backbone modules, ops and attention kernel.
Norms and modulation are computed in float32, as the paper's implementation does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def timestep_embedding(freq_dim: int, t: torch.Tensor) -> torch.Tensor:
    """Sinusoidal embedding [cos, sin] of timesteps in the DiT's 0..1000 units, float32."""
    half = freq_dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def embed_stream(emb, x, t, context, clip_fea, dtype):
    """Tokens, time embedding, per-layer modulation input and cross-attention context of one stream.

    `emb` has the StreamEmbedders modules; context must already be padded to the text length.
    Returns (tokens (B, L, dim), temb (B, dim), e (B, 6, dim), context (B, n_img + n_txt, dim)).
    """
    tokens = emb.patch_embedding(x.to(dtype)).flatten(2).transpose(1, 2)
    temb = emb.time_embedding(timestep_embedding(emb.cfg.freq_dim, t).to(dtype))
    e = emb.time_projection(temb).unflatten(1, (6, -1))
    text = emb.text_embedding(context.to(dtype))
    image = emb.img_emb.proj(clip_fea.to(dtype))
    return tokens, temb, e, torch.cat([image, text], dim=1)


@dataclass
class ReferenceStream:
    """The reference stream as it enters the first layer. It depends only on the reference (its
    timestep is constant), so a sampling loop computes it once and reuses it at every step."""
    tokens: torch.Tensor  # (B, L_ref, dim)
    e: torch.Tensor  # (B, 6, dim) time input of the expert's modulation
    context: torch.Tensor  # (B, n_img + n_txt, dim) its caption and first-frame CLIP tokens, embedded
    context_img_len: int
    grid: tuple  # (frames, height, width) in tokens

    @staticmethod
    def cat(rows: list["ReferenceStream"]) -> "ReferenceStream":
        """Rows stacked into one batch (rows of one reference are shared, not copied)."""
        first = rows[0]
        if all(r is first for r in rows):
            return ReferenceStream(*(t.expand(len(rows), *t.shape[1:]) for t in (first.tokens, first.e, first.context)),
                                   first.context_img_len, first.grid)
        return ReferenceStream(*(torch.cat(parts) for parts in zip(*((r.tokens, r.e, r.context) for r in rows))),
                               first.context_img_len, first.grid)


def embed_reference(expert, ref_x, ref_t, ref_context, ref_clip_fea, dtype) -> ReferenceStream:
    """Embed the reference with the expert's own embedders; ref_context must be padded already."""
    tokens, _, e, context = embed_stream(expert, ref_x, ref_t, ref_context, ref_clip_fea, dtype)
    grid = tuple(s // p for s, p in zip(ref_x.shape[2:], expert.cfg.patch_size))
    return ReferenceStream(tokens, e, context, ref_clip_fea.shape[1], grid)


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


def plain_layer(block, x, e, freqs, context, context_img_len, host):
    """A backbone layer without an expert block (plain Wan)."""
    mod = modulation(block, e, host)
    q, k, v = attention_inputs(block, x, mod, freqs, host)
    y = host.attention(q, k, v, block.num_heads)
    return attention_outputs(block, x, y, mod,
                             lambda h: host.backbone_cross_attn(block, h, context, context_img_len))


def joint_layer(block, expert_block, x, ref, e, ref_e, freqs, ref_freqs, context, ref_context,
                context_img_len, ref_context_img_len, host):
    """A backbone layer and its expert block: each stream its own norms, modulation and q/k/v, ONE
    full attention over [target ; reference], then each stream its own output, cross-attention and FFN.
    Returns the new (target tokens, reference tokens)."""
    mod = modulation(block, e, host)
    ref_mod = modulation(expert_block, ref_e, host)
    q, k, v = attention_inputs(block, x, mod, freqs, host)
    rq, rk, rv = attention_inputs(expert_block, ref, ref_mod, ref_freqs, host)
    y = host.attention(torch.cat([q, rq], 1), torch.cat([k, rk], 1), torch.cat([v, rv], 1), block.num_heads)
    del q, k, v, rq, rk, rv
    y, ref_y = y.split([x.shape[1], ref.shape[1]], dim=1)
    x = attention_outputs(block, x, y, mod,
                          lambda h: host.backbone_cross_attn(block, h, context, context_img_len))
    ref = attention_outputs(expert_block, ref, ref_y, ref_mod,
                            lambda h: i2v_cross_attention(expert_block.cross_attn, h, ref_context,
                                                          ref_context_img_len, host.attention,
                                                          expert_block.num_heads))
    return x, ref
