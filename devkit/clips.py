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
