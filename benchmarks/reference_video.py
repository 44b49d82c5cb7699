"""Reading 49 frames 'evenly' from a long 1080p clip: the pack's reader (vap_core.video) against the
reader it replaced (kept here, as the baseline: it decoded the whole video twice, single-threaded,
and kept the chosen frames at full resolution in float32). Each run is a fresh process:

    python -m benchmarks.reference_video write CLIP SECONDS phone|ultrafast
    python -m benchmarks.reference_video before|after CLIP     # prints one JSON line
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from devkit.clips import write_test_pattern

# Two H.264 clips of FFmpeg's moving test pattern at 1080p30:
CLIPS = {
    # as a phone records: High profile, a keyframe every second, no B-frames, 16 Mb/s, with sensor-like noise
    "phone": (",noise=alls=10:allf=t", {"preset": "veryfast", "x264-params": "keyint=30:min-keyint=30:bframes=0:scenecut=0"},
              16_000_000),
    # x264's fastest setting: Constrained Baseline, a keyframe every 250 frames, every frame a reference,
    # so every frame up to the last chosen one must be decoded
    "ultrafast": ("", {"preset": "ultrafast"}, 0),
}


def write_clip(path: Path, seconds: int, kind: str):
    filters, options, bit_rate = CLIPS[kind]
    write_test_pattern(path, seconds, filters=filters, options=options, bit_rate=bit_rate)


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
        write_clip(path, int(argv[2]), argv[3])
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
