"""Reading safetensors files, and only those: lazily through `safe_open`, refusing pickles and damaged files."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import CorruptCheckpointError, MissingShardError, NotACheckpointError

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}

# every dtype the pack knows: its name in the nodes and the export command, safetensors' code for it
_DTYPE_TABLE = ((torch.bfloat16, "bf16", "BF16"), (torch.float16, "fp16", "F16"), (torch.float32, "fp32", "F32"),
                (torch.float64, "fp64", "F64"), (torch.float8_e4m3fn, "fp8_e4m3fn", "F8_E4M3"),
                (torch.float8_e5m2, "fp8_e5m2", "F8_E5M2"))
DTYPES = {name: dtype for dtype, name, _ in _DTYPE_TABLE}
SAFETENSORS_DTYPES = {code: dtype for dtype, _, code in _DTYPE_TABLE}
SAFETENSORS_CODES = {dtype: code for dtype, _, code in _DTYPE_TABLE}


def refuse_pickle(path: Path):
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise NotACheckpointError(
            f"{path} is a pickle-format file; this pack never loads pickles (they can run code). "
            "Use the .safetensors release of the model.")


def open_safetensors(path) -> "safe_open":
    path = Path(path)
    if not path.is_file():
        raise MissingShardError(f"{path} does not exist. Check the path, or download the file again.")
    refuse_pickle(path)
    _check_layout(path)
    try:
        return safe_open(str(path), framework="pt")
    except Exception as err:  # safetensors raises its own error type for every format problem
        raise CorruptCheckpointError(
            f"{path} cannot be read as safetensors ({err}). It is truncated, damaged or not a "
            "safetensors file: download or export it again.") from None


def _check_layout(path: Path):
    """Refuse a pickle by its first bytes, and a header whose tensors do not fit the file, before
    safetensors maps anything. Other damage is left to safetensors' own checks."""
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte header length, then the JSON header ("{"); a pickle starts with its
    # protocol byte 0x80, torch.save's zip with "PK\x03\x04"
    if head.startswith((b"\x80", b"PK\x03\x04")) and head[8:9] != b"{":
        raise NotACheckpointError(
            f"{path} is a pickle-format file (torch.save), whatever its name says; it was never loaded: "
            "this pack never loads pickles (they can run code). Use the .safetensors release of the model.")
    data_start, header = read_header(path)
    claimed, held = _data_size(header), path.stat().st_size - data_start
    if claimed is not None and claimed > held:
        raise CorruptCheckpointError(
            f"{path}: its header says it holds {claimed} bytes of tensors, but the file holds only {held}: it is "
            "truncated, or its header is damaged. Download or export it again.")


MAX_HEADER = 100_000_000  # safetensors' own limit


def read_header(path: Path) -> tuple[int, dict | None]:
    """(where the tensor data starts, the JSON header); the header is None where it is not one."""
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if length > min(path.stat().st_size - 8, MAX_HEADER) or f.read(1) != b"{":
            return 8 + length, None
        try:
            header = json.loads(b"{" + f.read(length - 1))
        except ValueError:  # not JSON, or not UTF-8
            return 8 + length, None
    return 8 + length, header if isinstance(header, dict) else None


def _data_size(header: dict | None) -> int | None:
    """The bytes of tensor data a header announces; None where it is not a header safetensors accepts."""
    try:
        ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
    except (AttributeError, TypeError, KeyError, IndexError):
        return None
    return max(ends, default=0) if all(type(end) is int for end in ends) else None


class TensorSource:
    """Named tensors spread over one or more safetensors files, read one at a time."""

    def __init__(self, files):
        self.files = [Path(f) for f in files]
        handles = [open_safetensors(f) for f in self.files]
        self._where = {name: h for h in handles for name in h.keys()}
        self._file = {name: f for f, h in zip(self.files, handles) for name in h.keys()}
        self._offsets = {}  # file -> (start of the data, header)
        self.metadata = handles[0].metadata() or {}

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name) -> bool:
        return name in self._where

    def shape(self, name) -> tuple:
        return tuple(self._where[name].get_slice(name).get_shape())

    def dtype(self, name) -> torch.dtype:
        return SAFETENSORS_DTYPES[self._where[name].get_slice(name).get_dtype()]

    def nbytes(self, name) -> int:
        return torch.Size(self.shape(name)).numel() * self.dtype(name).itemsize

    def get(self, name) -> torch.Tensor:
        """The tensor as safetensors maps it from the file (no copy: pages are read when touched)."""
        try:
            return self._where[name].get_tensor(name)
        except Exception as err:
            raise CorruptCheckpointError(
                f"tensor {name} cannot be read ({err}): the file is damaged; download or export it again.") from None

    def read(self, name) -> torch.Tensor:
        """A private copy read from the file. Converting it leaves no mapped pages behind, so loading
        with a dtype change holds at most one source tensor beside the result."""
        path = self._file[name]
        if path not in self._offsets:
            self._offsets[path] = read_header(path)
        data_start, header = self._offsets[path]
        begin, end = header[name]["data_offsets"]
        buf = torch.empty(end - begin, dtype=torch.uint8)
        with open(path, "rb", buffering=0) as f:
            f.seek(data_start + begin)
            got = f.readinto(memoryview(buf.numpy())) if end > begin else 0
        if got != end - begin:
            raise CorruptCheckpointError(f"tensor {name} is cut short in {path}: the file is truncated; download "
                                         "or export it again.")
        return buf.view(self.dtype(name)).reshape(self.shape(name))
