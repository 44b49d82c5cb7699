"""Tensor names of the released CogVideoX VAP checkpoint (diffusers layout) in ComfyUI 0.33's CogVideoX layout, and
the learned position table re-laid out to the shape ComfyUI allocates.

Expert tensors carry `_mot_ref` on a top-level module (`patch_embed_mot_ref.*`, `time_embedding_mot_ref.*`) or
on a block's submodule (`transformer_blocks.4.attn1_mot_ref.to_q.weight`).
"""
from __future__ import annotations

import re

import torch

from .errors import NotACheckpointError
from .keys import sort_released_name

_BLOCK_PARTS = {
    "norm1.linear": "norm1.linear", "norm1.norm": "norm1.norm", "norm2.linear": "norm2.linear",
    "norm2.norm": "norm2.norm", "attn1.to_q": "q", "attn1.to_k": "k", "attn1.to_v": "v",
    "attn1.norm_q": "norm_q", "attn1.norm_k": "norm_k", "attn1.to_out.0": "attn_out",
    "ff.net.0.proj": "ff_proj", "ff.net.2": "ff_out",
}
_TOP_PARTS = {
    "patch_embed.proj": "patch_embed.proj", "patch_embed.text_proj": "patch_embed.text_proj",
    "time_embedding.linear_1": "time_embedding_linear_1", "time_embedding.linear_2": "time_embedding_linear_2",
    "norm_final": "norm_final", "norm_out.linear": "norm_out.linear", "norm_out.norm": "norm_out.norm",
    "proj_out": "proj_out",
}
_HEAD = ("norm_final", "norm_out", "proj_out")  # the target's output head: the expert has none
# the reference stream's output head of the paper's "reference_independent" training; inference never uses it
UNUSED_REFERENCE_HEAD = re.compile(r"^(norm_final|norm_out|proj_out)_mot_ref\.")
_LEAF = re.compile(r"^(.+)\.(weight|bias)$")

# ComfyUI 0.33 allocates CogVideoX's table for 226 text tokens and 13 x 30 x 45 video tokens (49 frames of
# 720x480), whatever the checkpoint: text rows first, video rows from row 226, zeros elsewhere.
COMFY_TEXT_ROWS = 226
COMFY_VIDEO_ROWS = 13 * 30 * 45


def _convert_plain(name: str) -> str | None:
    if name == "patch_embed.pos_embedding":
        return name
    parts = name.split(".")
    if parts[0] == "transformer_blocks" and len(parts) > 2 and parts[1].isdigit():
        m = _LEAF.match(".".join(parts[2:]))
        if m and m.group(1) in _BLOCK_PARTS:
            return f"blocks.{parts[1]}.{_BLOCK_PARTS[m.group(1)]}.{m.group(2)}"
        return None
    m = _LEAF.match(name)
    if m and m.group(1) in _TOP_PARTS:
        return f"{_TOP_PARTS[m.group(1)]}.{m.group(2)}"
    return None


def convert_released_name(name: str) -> tuple[str, str] | None:
    """Map one released tensor name to ("backbone" | "expert", ComfyUI-layout name).

    Returns None for the unused reference head; raises KeyError for a name it does not know.
    """
    return sort_released_name(name, "transformer_blocks", UNUSED_REFERENCE_HEAD, _convert_plain, _HEAD)


def comfy_table(table: torch.Tensor, text_rows: int) -> torch.Tensor:
    """A released table (1, text_rows + video rows, dim) laid out as ComfyUI 0.33 allocates it."""
    video_rows = table.shape[1] - text_rows
    if text_rows > COMFY_TEXT_ROWS or video_rows > COMFY_VIDEO_ROWS:
        raise NotACheckpointError(
            f"this CogVideoX's position table has {text_rows} text and {video_rows} video rows; ComfyUI's CogVideoX "
            f"holds at most {COMFY_TEXT_ROWS} and {COMFY_VIDEO_ROWS} (CogVideoX-5B-I2V's 720x480, 49 frames).")
    out = table.new_zeros(1, COMFY_TEXT_ROWS + COMFY_VIDEO_ROWS, table.shape[2])
    out[:, :text_rows] = table[:, :text_rows]
    out[:, COMFY_TEXT_ROWS:COMFY_TEXT_ROWS + video_rows] = table[:, text_rows:]
    return out
