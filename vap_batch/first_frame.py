"""A video's first frame as one still picture, turned as players show it: the image a row's video
target gives, and the contact sheet's posters."""
from __future__ import annotations

from pathlib import Path

from vap_core.orientation import as_shown, orientation

_PIXEL_FORMATS = {"png": "rgb24", "mjpeg": "yuvj420p"}


def write_first_frame(video: Path, image: Path, codec: str, max_width: int | None = None) -> bool:
    """Writes it with `codec` (png or mjpeg), no wider than `max_width` (even sizes); False if it has no frame."""
    import av
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0), None)
        if frame is None:
            return False
        rgb = as_shown(frame.to_ndarray(format="rgb24"), orientation(frame, video.name))
    height, width = rgb.shape[:2]
    if max_width:  # even sizes, which the JPEG's 4:2:0 needs
        scaled = min(max_width, width) // 2 * 2 or 2
        width, height = scaled, max(2, round(height * scaled / width / 2) * 2)
    pixel_format = _PIXEL_FORMATS[codec]
    with av.open(str(image), "w", format="image2") as out:
        stream = out.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        still = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width=width, height=height, format=pixel_format)
        out.mux(stream.encode(still))
        out.mux(stream.encode())
    return True
