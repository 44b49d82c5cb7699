"""The expert as a ComfyUI model: built from comfy.ops and wrapped in a ModelPatcher, so ComfyUI
loads, partially loads and offloads it together with the backbone."""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.utils

from ..vap_core.checkpoint import DTYPES
from ..vap_core.expert import load_expert
from ..vap_core.released import Released

DTYPE_CHOICES = ["default", "bf16", "fp16", "fp8_e4m3fn"]


def expert_dtype(choice: str) -> torch.dtype:
    """'default' is the dtype ComfyUI picks for diffusion models on this device (bf16 on recent GPUs)."""
    if choice == "default":
        return comfy.model_management.unet_dtype(supported_dtypes=[torch.bfloat16, torch.float16, torch.float32])
    return DTYPES[choice]


def load_expert_patcher(source, dtype_choice: str, disable_dynamic: bool = False) -> comfy.model_patcher.ModelPatcher:
    """Read the expert's tensors only (from the pack's file or a released checkpoint: a path, or a
    vap_core Released already read) into a ModelPatcher. Weights are cast to the compute dtype layer
    by layer when used (manual_cast). The patcher can load itself again (cached_patcher_init), as core
    loaders' can: ComfyUI's multi-GPU nodes make each further device its own copy that way.
    disable_dynamic: what ComfyUI passes such a factory; this patcher is never dynamic."""
    bar = comfy.utils.ProgressBar(1)
    expert, meta = load_expert(source, expert_dtype(dtype_choice), ops=comfy.ops.manual_cast,
                               progress=lambda done, total: bar.update_absolute(done, total))
    expert.vap_metadata = meta
    patcher = comfy.model_patcher.ModelPatcher(
        expert, load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
        size=comfy.model_management.module_size(expert))
    # the path, not a Released: that would keep the checkpoint's files open as long as the patcher lives
    patcher.cached_patcher_init = (load_expert_patcher, (source.src if isinstance(source, Released) else source, dtype_choice))
    return patcher


def follow_model_device(model, key: str):
    """Put the expert attached to `model` (under `key`) on the model's device. Select Model Device (ComfyUI 0.33)
    can put the model on another device than the expert's, before or after Apply VAP Expert; ComfyUI loads each
    model on its own load device, so the expert's weights would cross devices in every layer. The expert there is
    a copy loaded again from its file, as ComfyUI's own multi-GPU clones are."""
    experts = model.get_additional_models_with_key(key)
    if experts and experts[0].load_device != model.load_device and hasattr(experts[0], "deepclone_multigpu"):
        model.set_additional_models(key, [experts[0].deepclone_multigpu(new_load_device=model.load_device)])
