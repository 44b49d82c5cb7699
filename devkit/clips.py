"""Writing small video files from frames, for the tests and the tiny models' reference videos."""
from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, images, codec: str = "libx264", pix_fmt: str = "yuv420p", fps: int = 16,
               options: dict | None = None, durations_ms=None) -> Path:
    """Encodes `images` ((H, W, 3) RGB or (H, W, 4) RGBA uint8 arrays) into `path`, its container from
    the suffix; `durations_ms` (repeated as needed) makes it variable-rate."""
    millisecond = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps, options=options or {})
        if durations_ms:
            stream.codec_context.time_base = stream.time_base = millisecond
        t = 0
        for i, image in enumerate(images):
            image = np.ascontiguousarray(image)
            if i == 0:
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = pix_fmt
            frame = av.VideoFrame.from_ndarray(image, format="rgba" if image.shape[2] == 4 else "rgb24")
            if durations_ms:
                frame.pts, frame.time_base = t, millisecond
                t += durations_ms[i % len(durations_ms)]
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def write_test_pattern(path: Path, seconds: int, *, size: str = "1920x1080", rate: int = 30, filters: str = "",
                       options: dict | None = None, bit_rate: int = 0) -> Path:
    """An H.264 mp4 of FFmpeg's moving test pattern (testsrc2, then `filters`): a long clip written fast,
    with the encoder `options` (x264's preset, keyframe interval) and `bit_rate` given."""
    with av.open(f"testsrc2=size={size}:rate={rate}:duration={seconds}{filters}", format="lavfi") as source, \
            av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate, options=options or {})
        stream.width, stream.height = map(int, size.split("x"))
        stream.pix_fmt = "yuv420p"
        if bit_rate:
            stream.bit_rate = bit_rate
        for frame in source.decode(video=0):
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.pict_type = None, av.video.frame.PictureType.NONE  # lavfi's "I" would force keyframes
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path
