"""Choosing which reference video frames to use, as the paper's pipeline does."""
from __future__ import annotations

import random

import torch

from .errors import InputError

MODES = ("evenly", "first", "random")


def select_frames(total: int, count: int, mode: str = "evenly", seed: int = 0) -> list[int]:
    """Indices of `count` frames out of `total`.

    evenly: spread over the whole video (the paper's default; frames repeat if the video is shorter);
    first: the first `count` frames; random: a contiguous run of `count` frames at a seeded start.
    """
    if mode not in MODES:
        raise InputError(f"frame selection {mode!r} is not one of {', '.join(MODES)}.")
    if count < 1 or total < 1:
        raise InputError(f"cannot take {count} frames from a video of {total} frames.")
    if mode == "evenly":
        return torch.linspace(0, total - 1, count).long().tolist()
    if total < count:
        raise InputError(
            f"the reference video has {total} frames; '{mode}' selection needs at least {count}. Use a longer "
            "video, a smaller frame count, or 'evenly' (which spreads the frames it has).")
    start = 0 if mode == "first" else random.Random(seed).randint(0, total - count)
    return list(range(start, start + count))
