"""Tensor names: the released checkpoint's diffusers layout to the original Wan layout.

The released VAP checkpoint holds the frozen backbone and the expert; expert tensors carry
`_mot_ref` (`blocks.4.attn1_mot_ref.to_q.weight`, `condition_embedder_mot_ref.*`, ...).
"""
from __future__ import annotations

import re

# A block's submodules, diffusers name -> Wan name. diffusers' norm2 is Wan's norm3 (the
# affine norm before cross-attention); the diffusers block's norm1/norm3 carry no tensors.
_BLOCK_PARTS = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}
_EMBEDDER_PARTS = {
    "time_embedder.linear_1": "time_embedding.0", "time_embedder.linear_2": "time_embedding.2",
    "time_proj": "time_projection.1",
    "text_embedder.linear_1": "text_embedding.0", "text_embedder.linear_2": "text_embedding.2",
    "image_embedder.norm1": "img_emb.proj.0", "image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "image_embedder.ff.net.2": "img_emb.proj.3", "image_embedder.norm2": "img_emb.proj.4",
}

# The reference stream's output head of the paper's "reference_independent" training mode.
# Inference never uses it; these (and only these) names are skipped.
UNUSED_REFERENCE_HEAD = re.compile(r"^(proj_out_mot_ref\.(weight|bias)|scale_shift_table_mot_ref|norm_out_mot_ref\..*)$")
_MARK = "_mot_ref"
_LEAF = re.compile(r"^(.+)\.(weight|bias)$")
_TOP = {"proj_out.weight": "head.head.weight", "proj_out.bias": "head.head.bias",
        "scale_shift_table": "head.modulation",
        "patch_embedding.weight": "patch_embedding.weight", "patch_embedding.bias": "patch_embedding.bias"}


def sort_released_name(name: str, blocks: str, unused, convert_plain, head: tuple) -> tuple[str, str] | None:
    """A released name as ("backbone" | "expert", its name in the pack's layout), for either family: the expert
    marker sits on a top-level module or on a submodule of `blocks`.N; `unused` matches the reference head that
    inference never uses (None is returned), `head` the target head the expert has none of. KeyError for a name
    `convert_plain` does not know."""
    if unused.match(name):
        return None
    parts = name.split(".")
    i = 2 if parts[0] == blocks and len(parts) > 2 else 0
    is_expert = parts[i].endswith(_MARK)
    if is_expert:
        parts[i] = parts[i][: -len(_MARK)]
    converted = convert_plain(".".join(parts))
    if converted is None or (is_expert and converted.startswith(head)):
        raise KeyError(name)
    return ("expert" if is_expert else "backbone"), converted


def _convert_plain(name: str) -> str | None:
    if name in _TOP:
        return _TOP[name]
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 2 and parts[1].isdigit():
        block, rest = ".".join(parts[:2]), ".".join(parts[2:])
        if rest == "scale_shift_table":
            return f"{block}.modulation"
        m = _LEAF.match(rest)
        if m and m.group(1) in _BLOCK_PARTS:
            return f"{block}.{_BLOCK_PARTS[m.group(1)]}.{m.group(2)}"
        return None
    if parts[0] == "condition_embedder":
        m = _LEAF.match(".".join(parts[1:]))
        if m and m.group(1) in _EMBEDDER_PARTS:
            return f"{_EMBEDDER_PARTS[m.group(1)]}.{m.group(2)}"
    return None


def convert_released_name(name: str) -> tuple[str, str] | None:
    """Map one released tensor name to ("backbone" | "expert", Wan-layout name).

    Returns None for the unused reference head; raises KeyError for a name it does not know.
    """
    return sort_released_name(name, "blocks", UNUSED_REFERENCE_HEAD, _convert_plain, ("head.",))
