"""Reading checkpoints: safetensors only, lazily through `safe_open`, strict about every tensor."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from .errors import (CheckpointMismatchError, CorruptCheckpointError, MissingShardError,
                     NotACheckpointError)

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


def locate_released(path, opened: TensorSource | None = None) -> tuple[Path, dict, TensorSource]:
    """The config's path, the config and the tensors of a released VAP checkpoint (diffusers layout).

    `path` may be the weights file (single file or index json), the `transformer/` folder, or the
    folder above it. `opened`: that single file, already opened (so it is not opened twice).
    """
    path = Path(path)
    if not path.exists():
        raise MissingShardError(f"{path} does not exist. Point to the released checkpoint folder "
                                "(the one that holds transformer/), or to a file inside transformer/.")
    if path.is_dir():
        folder = path / "transformer" if (path / "transformer").is_dir() else path
        indexes = sorted(folder.glob("*.safetensors.index.json"))
        singles = sorted(folder.glob("*.safetensors"))
        if indexes:
            weights = indexes[0]
        elif len(singles) == 1:
            weights = singles[0]
        else:
            _refuse_pickle_folder(folder)
            raise NotACheckpointError(
                f"{path} is not a released VAP checkpoint: expected transformer/config.json beside one "
                "safetensors file or an index json with its shards.")
    else:
        refuse_pickle(path)
        weights, folder = path, path.parent
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise NotACheckpointError(
            f"no config.json beside {weights}: a released VAP checkpoint keeps it in transformer/ next "
            "to the weights. Download it too, or use an expert file exported by `python -m vap_core.export`.")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptCheckpointError(f"{config_path} is not valid JSON ({err}): download it again.") from None
    if not isinstance(config, dict):
        raise CorruptCheckpointError(f"{config_path} holds a JSON {type(config).__name__}, not the object of "
                                     "settings a transformer config.json holds: download it again.")
    if weights.name.endswith(".index.json"):
        return config_path, config, TensorSource(_shards(weights))
    if weights.suffix != ".safetensors":
        raise NotACheckpointError(f"{weights} is neither a .safetensors file nor an index json.")
    return config_path, config, opened if opened is not None else TensorSource([weights])


def _refuse_pickle_folder(folder: Path):
    pickles = [p for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        refuse_pickle(pickles[0])


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CorruptCheckpointError(
            f"{index} is not a safetensors index (no weight_map: {err}): it is damaged or not the checkpoint's index "
            "json. Download it again (it lists which shard holds each tensor), or point to the checkpoint's folder.") from None
    shards = sorted(set(weight_map.values()))
    folder = index.parent.resolve()
    for shard in shards:
        # a shard is a file of the index's own folder: no "..", no absolute path, no symlink out of it
        inside = isinstance(shard, str) and (folder / shard).resolve().parent == folder
        if not inside or not shard.endswith(".safetensors"):
            raise NotACheckpointError(
                f"{index} names {shard!r} as a shard; shards must be .safetensors files in the index's own folder "
                f"({folder}). Nothing was read. Download the checkpoint's index json again.")
    missing = [s for s in shards if not (index.parent / s).is_file()]
    if missing:
        raise MissingShardError(
            f"{len(missing)} of the {len(shards)} shards that {index.name} lists are missing from "
            f"{index.parent}: {', '.join(missing)}. Download them (every file of transformer/).")
    return [index.parent / s for s in shards]


def check_tensors(expected: dict, provided: dict, where: str):
    """Raise CheckpointMismatchError unless `provided` (name -> shape) has exactly the `expected` tensors."""
    missing = sorted(set(expected) - set(provided))
    unexpected = sorted(set(provided) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:5])})")
        raise CheckpointMismatchError(
            f"{where} does not match the model: tensors {'; '.join(parts)}. "
            "The file is from another model or is incomplete.")
    for name, shape in provided.items():
        if tuple(shape) != tuple(expected[name]):
            raise CheckpointMismatchError(
                f"{where}: tensor {name} has shape {tuple(shape)}, the model expects {tuple(expected[name])}.")


def module_shapes(module: nn.Module) -> dict:
    """name -> shape of a module's state (a module on the meta device costs no memory)."""
    return {name: tuple(p.shape) for name, p in module.state_dict().items()}


def storage_dtype(name: str, shape, dtype: torch.dtype) -> torch.dtype:
    """fp8 is for weight matrices only; vectors (biases, norms, modulation tables) keep bf16."""
    if dtype.itemsize == 1 and not (name.endswith(".weight") and len(shape) == 2):
        return torch.bfloat16
    return dtype


def load_strict(module: nn.Module, tensors: TensorSource, names: dict, where: str, dtype: torch.dtype,
                progress=None):
    """Fill a module built on the meta device from `tensors`; names maps its parameter names to the
    file's. Every parameter must be provided and every provided tensor used, with its exact shape.
    LayerNorm weights and modulation tables stay float32, as the paper's implementation keeps them;
    with an fp8 dtype only weight matrices are fp8 (see storage_dtype). `progress(done, total)` is
    called after each tensor.
    """
    check_tensors(module_shapes(module), {n: tensors.shape(src) for n, src in names.items()}, where)
    keep_fp32 = _float32_names(module)
    state = {}
    for i, (n, src) in enumerate(names.items()):
        target = torch.float32 if n in keep_fp32 else storage_dtype(n, tensors.shape(src), dtype)
        state[n] = convert_dtype(tensors.read(src), target)
        if progress:
            progress(i + 1, len(names))
    module.load_state_dict(state, strict=True, assign=True)
    return module


def convert_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype.itemsize == 1 and t.dtype.itemsize > 1:  # fp8 saturates instead of overflowing to NaN
        t = t.clamp(-torch.finfo(dtype).max, torch.finfo(dtype).max)  # exact in bf16/fp16/fp32: no upcast
    return t.to(dtype)


def _float32_names(module: nn.Module) -> set[str]:
    names = set()
    for mod_name, mod in module.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for p_name, _ in mod.named_parameters(recurse=False):
            if isinstance(mod, nn.LayerNorm) or p_name == "modulation":
                names.add(prefix + p_name)
    return names
