"""Choosing which reference video frames to use, as the paper's pipeline does."""
from __future__ import annotations

import random

import torch

from .errors import InputError
from .vae_grid import VAE_STRIDE

MODES = ("evenly", "first", "random")
# "evenly" on a clip shorter than the request repeats frames, as the paper's pipeline does. Beyond 4
# copies of each frame, whole latent frames (Wan's VAE packs 4 video frames into one) would hold a
# single still picture, so the reference's motion would come in jumps: such a request is refused.
MAX_REPEAT = 4


def select_frames(total: int, count: int, mode: str = "evenly", seed: int = 0) -> list[int]:
    """Indices of `count` frames out of `total`.

    evenly: spread over the whole video (the paper's default; frames repeat if the video is shorter);
    first: the first `count` frames; random: a contiguous run of `count` frames at a seeded start.
    """
    if mode not in MODES:
        raise InputError(f"frame selection {mode!r} is not one of {', '.join(MODES)}.")
    if count < 1 or total < 1:
        raise InputError(f"cannot take {count} frames from a video of {total} frames.")
    if count == 1:
        raise InputError("1 reference frame is a still image, not a video: VAP takes its concept, motion or camera "
                         "from a moving reference. Keep more frames (Wan takes 4k+1: 5, 9, ... 49, the paper's).")
    if mode == "evenly":
        if count > MAX_REPEAT * total:
            raise InputError(
                f"the reference video has {total} frames; {count} would repeat each about {count / total:.0f} times "
                f"(at most {MAX_REPEAT} is allowed: beyond that its motion comes in jumps). Keep at most "
                f"{MAX_REPEAT * total} frames, or use a longer video.")
        return torch.linspace(0, total - 1, count).long().tolist()
    if total < count:
        raise InputError(
            f"the reference video has {total} frames; '{mode}' selection needs at least {count}. Use a longer "
            "video, a smaller frame count, or 'evenly' (which spreads the frames it has).")
    start = 0 if mode == "first" else random.Random(seed).randint(0, total - count)
    return list(range(start, start + count))


def repeat_notice(total: int, count: int, mode: str) -> str | None:
    """What to tell the user when `evenly` repeats the frames of a clip shorter than `count`, else None."""
    if mode != "evenly" or count <= total:
        return None
    return (f"the reference video has {total} frames and {count} were asked: 'evenly' repeats each about "
            f"{count / total:.1f} times (as the paper's pipeline does for a short clip). A longer clip gives smoother motion.")


def check_reference_size(ref_width: int, ref_height: int, width: int, height: int):
    """Refuse a reference under 1/VAE_STRIDE of the video's size on a side: less than one of its pixels per
    latent cell (Wan's VAE works on 8x8 pixel cells), so stretched up it carries nothing the model can read."""
    least_w, least_h = -(-width // VAE_STRIDE), -(-height // VAE_STRIDE)
    if ref_width < least_w or ref_height < least_h:
        raise InputError(
            f"the reference is {ref_width}x{ref_height}, far below the video's {width}x{height}: under one of its "
            f"pixels per {VAE_STRIDE}x{VAE_STRIDE} cell that the model sees. Use a reference of at least "
            f"{least_w}x{least_h}, ideally near the video's size.")


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
