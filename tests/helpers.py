"""Helpers that only tests use (the harness they share with benchmarks and demos is in devkit/)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from devkit.clips import write_clip
from devkit.comfy_server import ROOT, TINY_SWAP, run_module, tiny_inputs

SCREENSHOTS = ROOT / ".screenshots"  # kept after the run (git-ignored), for a look at what the tests saw


def in_comfy(comfy, module: str, *args) -> dict:
    """Run tests/comfyui/MODULE with the ComfyUI of `comfy` (the fixture) in its own Python: the JSON line it prints."""
    root, python, base = comfy
    proc = run_module(python, module, root, base, *args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(result)
    return result


def write_phone_clip(path: Path, matrix) -> Path:
    """A 3-frame clip stored 64x32 with its top rows white and its left columns grey (so any turn or
    mirror shows), whose mp4 track display matrix (a, b, c, d) says how to show it, as a phone writes a
    portrait clip: (0, 1, -1, 0) turns it 90 degrees clockwise."""
    image = np.zeros((32, 64, 3), np.uint8)
    image[:4] = 255
    image[4:, :4] = 128
    write_clip(path, [image] * 3, options={"crf": "10"})
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") + 4
    at += 4 + (32 if data[at] == 1 else 20) + 8 + 8  # version/flags, times/id/duration, reserved, layer/volume
    a, b, c, d = (v << 16 for v in matrix)  # 16.16 fixed point
    data[at:at + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


def edges(frame) -> tuple[str, str]:
    """Which edge of a frame of write_phone_clip's (H, W) in 0..1 is white, and which grey."""
    sides = {"left": frame[:, :2], "right": frame[:, -2:], "top": frame[:2], "bottom": frame[-2:]}
    means = {side: float(pixels.mean()) for side, pixels in sides.items()}
    return max(means, key=means.get), next(side for side, mean in means.items() if 0.35 < mean < 0.65)


def screenshots_of(frontend) -> Path:
    """The screenshot folder of the tests on a `frontend` server (conftest's), one per frontend."""
    folder = SCREENSHOTS / ("newest-frontend" if "--front-end-root" in frontend.proc.args else "pinned-frontend")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tiny_widgets() -> dict:
    """{class_type: {widget: value}} of the tiny sizes and test inputs, under the test loaders' class_types."""
    widgets = {}
    for (class_type, name), value in tiny_inputs(steps=2, length=9).items():
        widgets.setdefault(TINY_SWAP.get(class_type, class_type), {})[name] = value
    return widgets
