"""Write a safetensors file one tensor at a time, so the whole set is never held in memory."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from .checkpoint import SAFETENSORS_CODES
from .whole_file import write_whole


def write_streaming(path, specs, produce, metadata: dict[str, str]):
    """Write tensors to `path` in the safetensors format.

    specs: list of (name, dtype, shape), in file order; produce(name) returns that tensor when it is
    written, so only one tensor is alive at a time. The file is written beside `path` and moved into
    place at the end: an interrupted run never leaves a half-written file under the final name.
    """
    header, offset = {}, 0
    for name, dtype, shape in specs:
        size = torch.Size(shape).numel() * dtype.itemsize
        header[name] = {"dtype": SAFETENSORS_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    def write(partial: Path):
        with open(partial, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for name, dtype, shape in specs:
                t = produce(name)
                if t.dtype != dtype or tuple(t.shape) != tuple(shape):
                    raise ValueError(f"{name}: produced {t.dtype} {tuple(t.shape)}, announced {dtype} {tuple(shape)}")
                f.write(t.contiguous().view(torch.uint8).numpy().data)  # no copy of the bytes
                del t

    write_whole(Path(path), write)
