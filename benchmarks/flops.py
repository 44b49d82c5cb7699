"""FLOP model of one Wan 2.1 I2V model call, plain and with the VAP expert (a multiply-add = 2 FLOP).

Counts what a call must compute: embeddings of the target, every layer's linears and attentions,
the head; with VAP, the expert layers' linears on the reference tokens (self-attention, its
cross-attention to its own caption and CLIP tokens, FFN) and one self-attention over
[target ; reference] in place of the target's own. The reference's embeddings are constant over a
sampling run and computed once, so they are not part of a call.
"""
from __future__ import annotations

import math

from vap_core.config import WanConfig

TEXT_TOKENS, IMAGE_TOKENS = 512, 257


def _layer_linears(d: int, f: int, tokens: int) -> float:
    self_attn = 2 * tokens * 4 * d * d  # q, k, v, o
    cross_q_o = 2 * tokens * 2 * d * d
    cross_kv = 2 * (TEXT_TOKENS + IMAGE_TOKENS) * 2 * d * d  # k, v on text; k_img, v_img on CLIP
    ffn = 2 * tokens * 2 * d * f
    return self_attn + cross_q_o + cross_kv + ffn


def _cross_attention(d: int, tokens: int) -> float:
    return 4 * tokens * (TEXT_TOKENS + IMAGE_TOKENS) * d  # QK^T and AV over text + CLIP keys


def call_flops(cfg: WanConfig, tokens: int, ref_tokens, expert_layers: int) -> tuple[float, float]:
    """(plain Wan call, VAP call) FLOP for one row of `tokens` target tokens and references of
    `ref_tokens` tokens (an int, or a list with one entry per reference)."""
    refs = ref_tokens if isinstance(ref_tokens, (list, tuple)) else [ref_tokens]
    d, f = cfg.dim, cfg.ffn_dim
    patch = math.prod(cfg.patch_size)
    embed = (2 * tokens * cfg.in_dim * patch * d + 2 * TEXT_TOKENS * (cfg.text_dim * d + d * d)
             + 2 * IMAGE_TOKENS * (cfg.image_dim ** 2 + cfg.image_dim * d) + 2 * (cfg.freq_dim * d + d * d + 6 * d * d))
    layer = _layer_linears(d, f, tokens) + 4 * tokens * tokens * d + _cross_attention(d, tokens)
    head = 2 * tokens * d * cfg.out_dim * patch
    plain = embed + cfg.num_layers * layer + head
    joint_extra = (sum(_layer_linears(d, f, n) + _cross_attention(d, n) for n in refs)
                   + 4 * ((tokens + sum(refs)) ** 2 - tokens * tokens) * d)
    return plain, plain + expert_layers * joint_extra
