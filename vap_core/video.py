"""Reading a reference video file: its frames are counted without decoding, then only what the chosen
frames need is decoded, in one pass; only the chosen frames are converted, each scaled down to
`max_side` as soon as it is kept, so memory follows the output (frames x output size), not the source."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import av
import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence

from .decode_plan import Packet, packets_to_decode
from .errors import InputError
from .frames import repeat_notice, select_frames
from .orientation import as_shown, orientation

_PIL_SUFFIXES = (".gif", ".webp")  # animated images: FFmpeg's webp decoder has no animation support
# FFmpeg decoders that read skip_frame anew for each frame, so a frame nothing refers to can be skipped
# unless chosen (libdav1d, for one, reads it once when opened: a chosen frame would never come out)
_SKIPS_EACH_FRAME = ("h264", "hevc")


def read_frames(path, count: int, mode: str = "evenly", seed: int = 0, max_side: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                check_interrupt: Callable[[], None] | None = None,
                notice: Callable[[str], None] | None = None) -> tuple[torch.Tensor, float]:
    """(count, H, W, 3) float frames in 0..1 chosen by `mode` (see frames.select_frames), and the fps.

    Frames larger than `max_side` on their longer side are scaled down to it (aspect kept).
    `progress(done, total)` is called as kept frames are read; `check_interrupt()` is called after
    every frame the decoder gives (packets left out are not decoded) and may raise to stop the reading;
    `notice(text)` is told when frames repeat (a clip shorter than `count`)."""
    path = Path(path)
    reader = _PilReader if path.suffix.lower() in _PIL_SUFFIXES else _AvReader
    video = _readable(path, lambda: reader(path))
    total = _readable(path, video.count)
    if total < 2:
        raise InputError(f"{path.name} holds {total} frame{'s' if total != 1 else ''}: a still image, not a video. "
                         "VAP takes its concept, motion or camera from a moving reference: use a video.")
    indices = select_frames(total, count, mode, seed)
    if notice and repeat_notice(total, count, mode):
        notice(f"{path.name}: {repeat_notice(total, count, mode)}")
    slots = {}  # frame index -> its places in the output ("evenly" repeats frames of a short video)
    for place, index in enumerate(indices):
        slots.setdefault(index, []).append(place)
    out, done = None, 0
    decoded = video.frames(set(slots))
    try:
        while True:
            shown = _readable(path, lambda: next(decoded, None))
            if shown is None:
                break
            if check_interrupt:
                check_interrupt()  # may raise (ComfyUI's interrupt): not a file problem, so not wrapped
            index, frame = shown
            if index in slots:
                array = torch.from_numpy(_readable(path, lambda: video.to_array(frame, max_side)))
                if out is None:  # the output, filled frame by frame: no full-size or second copy
                    out = torch.empty((count, *array.shape), dtype=torch.float32)
                out[slots.pop(index)] = array.float().div_(255.0)
                done += 1
                if progress:
                    progress(done, done + len(slots))
                if not slots:
                    break  # nothing after the last chosen frame is decoded
    finally:
        decoded.close()  # closes the file
    if slots:
        raise InputError(f"{path.name} lists {total} frames but frame {min(slots)} could not be decoded (a "
                         "truncated or damaged file). Re-export the video, or choose fewer frames.")
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
    """Container formats through FFmpeg (PyAV), decoded with FFmpeg's own threads. Only the packets the
    chosen frames need are decoded (decode_plan), and frames nothing refers to are skipped by the
    decoder itself unless chosen."""

    def __init__(self, path: Path):
        self.path = path
        self.orientation = None
        self.packets = None  # decode order, once count() has read them; None: decode it all, in order
        self.frame_at = {}  # a packet's pts -> its frame's place in display order
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path.name} has no video stream.")
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or stream.guessed_rate or 16)

    def count(self) -> int:
        # Read from the packets, decoding nothing (stream.frames is 0 in many files): one packet per frame
        # for the codecs people use (H.264/HEVC/VP8/VP9/AV1/ProRes), its display place from its timestamp.
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            found = [(p.pts, p.is_keyframe, p.is_discard) for p in container.demux(stream) if p.size]
            # AVI keeps frames in decode order without their display times: B-frames are put in order only
            # by decoding, so such a file is decoded whole
            timed = container.format.name != "avi"
        shown = [pts for pts, _, discard in found if not discard]
        if not timed or None in shown or len(set(shown)) < len(shown):  # no usable timestamps
            return len(found)
        self.frame_at = {pts: i for i, pts in enumerate(sorted(shown))}
        self.packets = [Packet(None if discard else self.frame_at[pts], key) for pts, key, discard in found]
        return len(shown)

    def frames(self, wanted: set[int]):
        """(display index, frame) for each frame decoded, in display order."""
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.packets is None:
                yield from enumerate(container.decode(stream))
                return
            codec, decoding, started = stream.codec_context, False, False
            demuxed = (packet for packet in container.demux(stream) if packet.size)
            for packet, planned, needed in zip(demuxed, self.packets, packets_to_decode(self.packets, wanted)):
                if not needed:
                    if decoding:  # the end of a run: what the decoder still holds comes out
                        yield from self._shown(stream.decode(None))
                        decoding = False
                    continue
                if not decoding and started:
                    codec.flush_buffers()  # the next run starts afresh at its keyframe, as after a seek
                decoding = started = True
                if codec.name in _SKIPS_EACH_FRAME:
                    codec.skip_frame = "DEFAULT" if planned.frame in wanted else "NONREF"
                yield from self._shown(stream.decode(packet))
            if decoding:
                yield from self._shown(stream.decode(None))

    def _shown(self, frames):
        for frame in frames:
            if frame.pts in self.frame_at:
                yield self.frame_at[frame.pts], frame

    def to_array(self, frame, max_side):
        if self.orientation is None:
            self.orientation = orientation(frame, self.path.name)
        width, height = _scaled(frame.width, frame.height, max_side)
        return as_shown(frame.to_ndarray(format="rgb24", width=width, height=height), self.orientation)


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

    def frames(self, wanted: set[int]):
        with Image.open(self.path) as image:
            yield from enumerate(ImageSequence.Iterator(image))

    def to_array(self, frame, max_side):
        rgb = ImageOps.exif_transpose(frame.convert("RGB"))  # its EXIF orientation, where it has one
        size = _scaled(rgb.width, rgb.height, max_side)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.array(rgb)  # a writable copy, for torch.from_numpy
