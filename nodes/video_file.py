"""Reading a reference video file's frames: only the selected ones are kept in memory."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageSequence

from ..vap_core.errors import InputError
from ..vap_core.frames import select_frames

SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".webp"}
_PIL_SUFFIXES = {".gif", ".webp"}  # animated images: FFmpeg's webp decoder has no animation support


def read_frames(path: str, count: int, mode: str, seed: int) -> tuple[torch.Tensor, float]:
    """(count, H, W, 3) float frames in 0..1 chosen by `mode` (see vap_core.frames), and the fps."""
    path = Path(path)
    reader = _pil_frames if path.suffix.lower() in _PIL_SUFFIXES else _av_frames
    try:
        total = sum(1 for _ in reader(path)[0])
        if total == 0:
            raise InputError(f"{path.name} has no video frames.")
        indices = select_frames(total, count, mode, seed)
        wanted = set(indices)
        frames, fps = reader(path)
        kept = {i: _to_tensor(f) for i, f in enumerate(frames) if i in wanted}
    except InputError:
        raise
    except Exception as err:  # av/PIL raise many types for damaged or unsupported files
        raise InputError(f"{path.name} cannot be read as a video ({err}). Use an mp4/webm/mov/gif/webp file, or "
                         "load it with another video node and connect its IMAGE frames.") from None
    return torch.stack([kept[i] for i in indices]), fps


def _av_frames(path: Path):
    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise InputError(f"{path.name} has no video stream.")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 16)

    def frames():
        with container:
            for frame in container.decode(stream):
                yield frame
    return frames(), fps


def _pil_frames(path: Path):
    image = Image.open(path)
    fps = 1000.0 / image.info["duration"] if image.info.get("duration") else 16.0

    def frames():
        with image:
            for frame in ImageSequence.Iterator(image):
                yield frame
    return frames(), fps


def _to_tensor(frame) -> torch.Tensor:
    """A decoded frame (converted only when it is kept) as (H, W, 3) floats."""
    rgb = frame.to_ndarray(format="rgb24") if isinstance(frame, av.VideoFrame) else np.asarray(frame.convert("RGB"))
    return torch.from_numpy(np.ascontiguousarray(rgb)).float() / 255.0
