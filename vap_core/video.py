"""Reading a reference video file: its frames are counted without decoding, then decoded once; only
the selected frames are converted, each scaled down to `max_side` as soon as it is kept, so memory
follows the output (frames x output size), not the source."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import av
import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence

from .errors import InputError
from .frames import select_frames

_PIL_SUFFIXES = (".gif", ".webp")  # animated images: FFmpeg's webp decoder has no animation support


def read_frames(path, count: int, mode: str = "evenly", seed: int = 0, max_side: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                check_interrupt: Callable[[], None] | None = None) -> tuple[torch.Tensor, float]:
    """(count, H, W, 3) float frames in 0..1 chosen by `mode` (see frames.select_frames), and the fps.

    Frames larger than `max_side` on their longer side are scaled down to it (aspect kept).
    `progress(done, total)` is called as kept frames are read; `check_interrupt()` is called after
    every decoded frame and may raise to stop the reading."""
    path = Path(path)
    reader = _PilReader if path.suffix.lower() in _PIL_SUFFIXES else _AvReader
    video = _readable(path, lambda: reader(path))
    total = _readable(path, video.count)
    if total < 2:
        raise InputError(f"{path.name} holds {total} frame{'s' if total != 1 else ''}: a still image, not a video. "
                         "VAP takes its concept, motion or camera from a moving reference: use a video.")
    indices = select_frames(total, count, mode, seed)
    slots = {}  # frame index -> its places in the output ("evenly" repeats frames of a short video)
    for place, index in enumerate(indices):
        slots.setdefault(index, []).append(place)
    out, done, seen = None, 0, 0
    decoded = video.frames()
    try:
        for i in range(total):
            frame = _readable(path, lambda: next(decoded, None))
            if frame is None:
                break
            seen += 1
            if check_interrupt:
                check_interrupt()  # may raise (ComfyUI's interrupt): not a file problem, so not wrapped
            if i in slots:
                array = torch.from_numpy(_readable(path, lambda: video.to_array(frame, max_side)))
                if out is None:  # the output, filled frame by frame: no full-size or second copy
                    out = torch.empty((count, *array.shape), dtype=torch.float32)
                out[slots[i]] = array.float().div_(255.0)
                done += 1
                if progress:
                    progress(done, len(slots))
                if done == len(slots):
                    break  # nothing after the last chosen frame is decoded
    finally:
        decoded.close()  # closes the file
    if done < len(slots):
        raise InputError(f"{path.name} lists {total} frames but only {seen} could be decoded (a truncated or "
                         "damaged file). Re-export the video, or choose fewer frames.")
    return out, video.fps


def _readable(path: Path, step):
    """step(), with the many error types of av and PIL for damaged or unsupported files made one clear error."""
    try:
        return step()
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{path.name} cannot be read as a video ({err}). Use an mp4/webm/mov/gif/webp file, or "
                         "load it with another video node and connect its IMAGE frames.") from None


def _scaled(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _AvReader:
    """Container formats through FFmpeg (PyAV), decoded with FFmpeg's own threads."""

    def __init__(self, path: Path):
        self.path = path
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path.name} has no video stream.")
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or stream.guessed_rate or 16)

    def count(self) -> int:
        # One packet per frame for the codecs people use (H.264/HEVC/VP8/VP9/AV1/ProRes); counting
        # packets reads the file but decodes nothing, unlike stream.frames, which many files leave 0.
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size)

    def frames(self):
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)

    def to_array(self, frame, max_side):
        width, height = _scaled(frame.width, frame.height, max_side)
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
        # the container's display rotation (a phone's portrait clip is stored landscape), as players show it;
        # FFmpeg gives it counter-clockwise, as np.rot90 turns
        quarter_turns = round(frame.rotation / 90) % 4
        if quarter_turns:
            if not getattr(self, "_told", False):
                self._told = True
                logging.info("VAP: %s is stored rotated; turning its frames by %d degrees, as players show it",
                             self.path.name, -frame.rotation)
            rgb = np.ascontiguousarray(np.rot90(rgb, quarter_turns))
        return rgb


class _PilReader:
    """Animated GIF and WebP through Pillow."""

    def __init__(self, path: Path):
        self.path = path
        with Image.open(path) as image:
            duration = image.info.get("duration")
            self.fps = 1000.0 / duration if duration else 16.0

    def count(self) -> int:
        with Image.open(self.path) as image:
            return getattr(image, "n_frames", 1)

    def frames(self):
        with Image.open(self.path) as image:
            yield from ImageSequence.Iterator(image)

    def to_array(self, frame, max_side):
        rgb = ImageOps.exif_transpose(frame.convert("RGB"))  # its EXIF orientation, where it has one
        size = _scaled(rgb.width, rgb.height, max_side)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.array(rgb)  # a writable copy, for torch.from_numpy
