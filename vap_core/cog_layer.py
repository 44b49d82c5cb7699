"""The computation of one CogVideoX layer: plain (the target alone) or joint (the target and the references, each
through its own weights, in ONE attention), and CogVideoX 1.0's 3-D RoPE.

Written against the block layout of ComfyUI 0.33's CogVideoXBlock (BLOCK_ATTRIBUTES) and a `Host` (host.py), so
the ComfyUI binding can run it over ComfyUI's own blocks. A stream carries its text tokens through every layer:
CogVideoX attends over [text; video] and updates both.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .rope import rope_table

BLOCK_ATTRIBUTES = ("num_heads", "norm1.linear", "norm1.norm", "q", "k", "v", "norm_q", "norm_k", "attn_out",
                    "norm2.linear", "norm2.norm", "ff_proj", "ff_out")


@dataclass
class CogStream:
    video: torch.Tensor  # (B, L_video, dim)
    text: torch.Tensor  # (B, L_text, dim)
    emb: torch.Tensor  # (B, time_dim) time embedding of the stream's modulation
    freqs: object  # RoPE of its video tokens, in the host's format


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Channels of a head given to the frame, height and width axes (CogVideoX's split: 1/4, 3/8, 3/8)."""
    return head_dim // 4, head_dim // 8 * 3, head_dim // 8 * 3


def cog_rope_table(head_dim: int, grid: tuple, t_start: int = 0, device=None) -> torch.Tensor:
    """CogVideoX 1.0's 3-D RoPE as unit complex numbers (rows (frame, row, column), one per channel pair): frames
    at t_start.., rows and columns at 0.. (the table of a learned-position model at its native size)."""
    return rope_table(head_dim, grid, t_start, device=device, axes=rope_axes(head_dim))


def layer_norm(norm, x, host):
    """An affine LayerNorm computed in float32, returned in x's dtype."""
    weight, bias = (host.cast(p, torch.float32, x.device) for p in (norm.weight, norm.bias))
    return F.layer_norm(x.float(), (x.shape[-1],), weight, bias, norm.eps).to(x.dtype)


def _zero_norm(norm, video, text, emb, host):
    """LayerNormZero: the modulated video and text, and their two gates."""
    shift, scale, gate, t_shift, t_scale, t_gate = norm.linear(F.silu(emb)).unsqueeze(1).chunk(6, dim=2)
    return (layer_norm(norm.norm, video, host) * (1 + scale) + shift,
            layer_norm(norm.norm, text, host) * (1 + t_scale) + t_shift, gate, t_gate)


def _attention_inputs(block, s: CogStream, host):
    video, text, gate, t_gate = _zero_norm(block.norm1, s.video, s.text, s.emb, host)
    h = torch.cat([text, video], dim=1)
    b, n, heads, n_text = h.shape[0], h.shape[1], block.num_heads, text.shape[1]

    def heads_of(proj, norm):
        x = layer_norm(norm, proj(h).view(b, n, heads, -1), host)
        return torch.cat([x[:, :n_text], host.rope(x[:, n_text:], s.freqs)], dim=1).flatten(2)
    return heads_of(block.q, block.norm_q), heads_of(block.k, block.norm_k), block.v(h), (gate, t_gate)


def _attention_outputs(block, s: CogStream, y, gates, host) -> CogStream:
    n_text = s.text.shape[1]
    y = block.attn_out(y)
    video = s.video + gates[0] * y[:, n_text:]
    text = s.text + gates[1] * y[:, :n_text]
    norm_video, norm_text, gate, t_gate = _zero_norm(block.norm2, video, text, s.emb, host)
    ff = block.ff_out(F.gelu(block.ff_proj(torch.cat([norm_text, norm_video], dim=1)), approximate="tanh"))
    return replace(s, video=video + gate * ff[:, n_text:], text=text + t_gate * ff[:, :n_text])


def plain_layer(block, target: CogStream, host) -> CogStream:
    """A layer without an expert block: the target's attention over its own [text; video]."""
    q, k, v, gates = _attention_inputs(block, target, host)
    return _attention_outputs(block, target, host.attention(q, k, v, block.num_heads), gates, host)


def joint_layer(block, expert_block, target: CogStream, references: list[CogStream], host):
    """A layer and its expert block: each stream its own norms, q/k/v and RoPE (the references through the expert
    block), ONE attention over [target text, target video, reference 1 text, reference 1 video, ...], then each
    stream its own output projection, gates and feed-forward. Returns (the target, the references), updated."""
    streams = [target, *references]
    inputs = [_attention_inputs(block if s is target else expert_block, s, host) for s in streams]
    q, k, v = (torch.cat(parts, dim=1) for parts in zip(*(i[:3] for i in inputs)))
    ys = host.attention(q, k, v, block.num_heads).split([s.text.shape[1] + s.video.shape[1] for s in streams], dim=1)
    del q, k, v
    out = [_attention_outputs(block if s is target else expert_block, s, y, i[3], host)
           for s, y, i in zip(streams, ys, inputs)]
    return out[0], out[1:]
