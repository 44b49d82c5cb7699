"""A stream's embeddings: patch tokens, time, text and CLIP-image context (for the backbone's
target stream and the expert's reference streams alike)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .expert_pass import stack_rows

REFERENCE_TIMESTEP = 1.0  # the reference stream is clean: constant timestep 1 in the DiT's 0..1000 units


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
class EmbeddedReference:
    """One reference as it enters the first expert layer. It depends only on the reference (its
    timestep is constant), so a sampling loop computes it once and reuses it at every step."""
    tokens: torch.Tensor  # (B, L_ref, dim)
    e: torch.Tensor  # (B, 6, dim) time input of the expert's modulation
    context: torch.Tensor  # (B, n_img + n_txt, dim) its caption and first-frame CLIP tokens, embedded
    context_img_len: int
    grid: tuple  # (frames, height, width) in tokens

    @property
    def rows(self) -> int:
        return self.tokens.shape[0]

    @staticmethod
    def cat(rows: list["EmbeddedReference"]) -> "EmbeddedReference":
        return stack_rows(rows, ("tokens", "e", "context"))


def embed_reference(expert, ref_x, ref_context, ref_clip_fea, dtype, ref_t=None) -> EmbeddedReference:
    """Embed a reference with the expert's own embedders; ref_context must be padded already.
    ref_t: one timestep per row (default: REFERENCE_TIMESTEP)."""
    if ref_t is None:
        ref_t = torch.full((ref_x.shape[0],), REFERENCE_TIMESTEP, device=ref_x.device)
    tokens, _, e, context = embed_stream(expert, ref_x, ref_t, ref_context, ref_clip_fea, dtype)
    grid = tuple(s // p for s, p in zip(ref_x.shape[2:], expert.cfg.patch_size))
    return EmbeddedReference(tokens, e, context, ref_clip_fea.shape[1], grid)
