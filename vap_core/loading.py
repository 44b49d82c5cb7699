"""Filling a model's modules from checkpoint tensors: strict about names and shapes, with the pack's dtype rules."""
from __future__ import annotations

import torch
from torch import nn

from .checkpoint import TensorSource
from .errors import CheckpointMismatchError


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
