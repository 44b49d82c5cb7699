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


FITS = ("stretch", "crop", "pad")


def fit_frames(frames: torch.Tensor, width: int, height: int, fit: str = "stretch") -> torch.Tensor:
    """(N, H, W, C) frames brought to height x width (bilinear).

    stretch: resized to exactly that size, aspect not kept (the paper's pipeline: diffusers' resize);
    crop: the centre part of the target's aspect, then resized (ComfyUI's WanImageToVideo);
    pad: resized to fit inside, aspect kept, centred on black."""
    if fit not in FITS:
        raise InputError(f"fit {fit!r} is not one of {', '.join(FITS)}.")
    x = frames.movedim(-1, 1)
    old_h, old_w = x.shape[-2:]
    if fit == "crop":
        old_aspect, new_aspect = old_w / old_h, width / height
        dx = round((old_w - old_w * new_aspect / old_aspect) / 2) if old_aspect > new_aspect else 0
        dy = round((old_h - old_h * old_aspect / new_aspect) / 2) if old_aspect < new_aspect else 0
        x = x[..., dy:old_h - dy, dx:old_w - dx]
    if fit == "pad":
        scale = min(width / old_w, height / old_h)
        inner_w, inner_h = max(1, round(old_w * scale)), max(1, round(old_h * scale))
        inner = torch.nn.functional.interpolate(x, size=(inner_h, inner_w), mode="bilinear")
        left, top = (width - inner_w) // 2, (height - inner_h) // 2
        x = torch.nn.functional.pad(inner, (left, width - inner_w - left, top, height - inner_h - top))
    else:
        x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear")
    return x.movedim(1, -1)
