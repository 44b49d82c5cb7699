"""VAPExpertLoader and VAPCheckpointLoader."""
from __future__ import annotations

import comfy.model_base
import comfy.sd
from comfy_api.latest import io

from ..vap_core.checkpoint import DTYPES
from ..vap_core.errors import IncompatibleExpertError
from ..vap_core.released import read_released
from . import folders
from .choices import CATEGORY, check_choice
from .expert_patcher import DTYPE_CHOICES, load_expert_patcher

ExpertSocket = io.Custom("VAP_EXPERT")  # the socket type of an expert patcher

# the weight dtype choices of ComfyUI's own UNETLoader
WEIGHT_DTYPES = {"default": {}, "fp8_e4m3fn": {"dtype": DTYPES["fp8_e4m3fn"]},
                 "fp8_e4m3fn_fast": {"dtype": DTYPES["fp8_e4m3fn"], "fp8_optimizations": True},
                 "fp8_e5m2": {"dtype": DTYPES["fp8_e5m2"]}}


class VAPExpertLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPExpertLoader",
            display_name="Load Video-As-Prompt Expert",
            category=CATEGORY,
            description="Loads the Video-As-Prompt expert from models/vap: the pack's expert file, or a released VAP "
                        "checkpoint (its index json or single file; only the expert tensors are read).",
            inputs=[
                io.Combo.Input("expert_name", options=folders.expert_choices(),
                               tooltip="from models/vap: the released checkpoint's transformer/diffusion_pytorch_model"
                                       ".safetensors.index.json, or an expert file exported from it"),
                io.Combo.Input("dtype", options=DTYPE_CHOICES, default="default",
                               tooltip="storage dtype of the expert's weights; default: what ComfyUI uses for "
                                       "diffusion models on this device; fp8_e4m3fn halves its memory"),
            ],
            outputs=[ExpertSocket.Output(display_name="expert", tooltip="the expert, for Apply VAP Expert")],
        )

    @classmethod
    def execute(cls, expert_name, dtype) -> io.NodeOutput:
        check_choice("dtype", dtype, DTYPE_CHOICES)
        return io.NodeOutput(load_expert_patcher(folders.full_path(expert_name), dtype))

    # Only the file: ComfyUI skips its own checks for every input named here.
    @classmethod
    def validate_inputs(cls, expert_name):
        return folders.check_listed(expert_name, folders.expert_choices())


class VAPCheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPCheckpointLoader",
            display_name="Load Video-As-Prompt Checkpoint (released)",
            category=CATEGORY,
            description="Loads a released VAP checkpoint (diffusers layout, from models/vap): the frozen backbone "
                        "(Wan 2.1 I2V 14B, or CogVideoX-5B-I2V on ComfyUI 0.33 and later) as a normal MODEL, and its "
                        "expert. If you already have Comfy-Org's Wan 2.1 I2V 480P file, use Load Diffusion Model + "
                        "Load VAP Expert instead.",
            inputs=[
                io.Combo.Input("checkpoint", options=folders.released_choices(),
                               tooltip="from models/vap: the released Video-As-Prompt-Wan2.1-14B (or -CogVideoX-5B) "
                                       "checkpoint's transformer/diffusion_pytorch_model.safetensors.index.json"),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="the backbone's weight dtype, as in Load Diffusion Model"),
                io.Combo.Input("expert_dtype", options=DTYPE_CHOICES, default="default",
                               tooltip="the expert's weight dtype, as in Load VAP Expert"),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="the frozen backbone (Wan 2.1 I2V 14B or CogVideoX-5B-I2V)"),
                     ExpertSocket.Output(display_name="expert", tooltip="the expert, for Apply VAP Expert")],
        )

    @classmethod
    def validate_inputs(cls, checkpoint):
        return folders.check_listed(checkpoint, folders.released_choices())

    @classmethod
    def execute(cls, checkpoint, weight_dtype, expert_dtype) -> io.NodeOutput:
        check_choice("weight_dtype", weight_dtype, WEIGHT_DTYPES)
        check_choice("expert_dtype", expert_dtype, DTYPE_CHOICES)
        path = folders.full_path(checkpoint)
        rel = read_released(path)
        if rel.cfg.family == "cog" and not hasattr(comfy.model_base, "CogVideoX"):
            raise IncompatibleExpertError(f"{checkpoint} is the CogVideoX-I2V-5B VAP checkpoint, and this ComfyUI has no "
                                          "CogVideoX: update ComfyUI to 0.33 or later (its native CogVideoX).")
        expert = load_expert_patcher(rel, expert_dtype)  # the same index, read once
        return io.NodeOutput(released_backbone(path, weight_dtype, rel), expert)


def released_backbone(path: str, weight_dtype: str, rel=None, disable_dynamic: bool = False):
    """The released checkpoint's backbone as a MODEL (rel: its index, if read already). Memory-mapped tensors
    renamed to ComfyUI's layout: ComfyUI copies each into its model once. Like a core loader's, the patcher
    can load itself again (cached_patcher_init), for ComfyUI's multi-GPU nodes."""
    rel = rel or read_released(path)
    model = comfy.sd.load_diffusion_model_state_dict(rel.backbone_tensors(), model_options=WEIGHT_DTYPES[weight_dtype])
    if model is None:
        family = "CogVideoX" if rel.cfg.family == "cog" else "Wan"
        raise ValueError(f"ComfyUI did not recognise the backbone of {path} as a {family} model.")
    model.cached_patcher_init = (released_backbone, (path, weight_dtype))
    return model
