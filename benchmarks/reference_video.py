"""Reading 49 frames 'evenly' from a long 1080p clip: the pack's reader (vap_core.video) against the
reader it replaced (kept here, as the baseline: it decoded the whole video twice, single-threaded,
and kept the chosen frames at full resolution in float32). Each run is a fresh process:

    python -m benchmarks.reference_video write CLIP [SECONDS]
    python -m benchmarks.reference_video before|after CLIP     # prints one JSON line
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path



def write_clip(path: Path, seconds: int, width: int = 1920, height: int = 1080, fps: int = 30):
    """A moving gradient, H.264 yuv420p (what a phone or an editor writes)."""
    import av
    import numpy as np
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    rows = np.linspace(0, 127, height, dtype=np.float32)[:, None, None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            image = ((ramp + rows + 4 * i) % 256).repeat(3, axis=2).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())


def read_before(path: Path, count: int):
    """The replaced reader: count by decoding everything, then decode again and convert the kept frames."""
    import av
    import numpy as np
    import torch

    from vap_core.frames import select_frames
    with av.open(str(path)) as container:
        total = sum(1 for _ in container.decode(video=0))
    wanted = set(select_frames(total, count, "evenly"))
    with av.open(str(path)) as container:
        kept = {i: torch.from_numpy(np.ascontiguousarray(f.to_ndarray(format="rgb24"))).float() / 255.0
                for i, f in enumerate(container.decode(video=0)) if i in wanted}
    return torch.stack([kept[i] for i in select_frames(total, count, "evenly")])


def read_after(path: Path, count: int):
    from vap_core.video import read_frames
    return read_frames(path, count, "evenly", max_side=832)[0]  # 832: the long side of Wan 2.1 480P


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def main(argv) -> int:
    what, path = argv[0], Path(argv[1])
    if what == "write":
        write_clip(path, int(argv[2]) if len(argv) > 2 else 60)
        return 0
    import torch  # noqa: F401  (loaded before the baseline RSS, as in ComfyUI)
    import av  # noqa: F401
    reader = {"before": read_before, "after": read_after}[what]
    before = _rss("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    start = time.perf_counter()
    frames = reader(path, 49)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_growth": _rss("VmHWM") - before, "shape": list(frames.shape),
                      "output_bytes": frames.numel() * frames.element_size()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
