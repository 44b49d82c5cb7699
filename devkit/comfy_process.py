"""Start ComfyUI inside this Python process (CPU, an isolated --base-directory) with the custom nodes
of that base directory: the pack, and the test-only loaders where comfy_server.prepare_base put them.
Used by the scripts that run with ComfyUI's own Python (python -m, from the pack folder)."""
from __future__ import annotations

import asyncio
import sys

import torch

# the pack's nodes these scripts use; the test-only loaders are not needed (a base of your own has none)
PACK_NODES = ("VAPExpertLoader", "VAPApplyExpert", "VAPEncodeReference")


def start(comfy_root: str, base: str, cpu: bool = True, reserve_vram: float | None = None,
          pytorch_attention: bool = False):
    """reserve_vram: ComfyUI's --reserve-vram, in GB. pytorch_attention: PyTorch's attention kernel, as ComfyUI
    picks on a GPU (on the CPU its default is a sub-quadratic kernel)."""
    sys.path.insert(0, comfy_root)  # ComfyUI's own modules first (the pack folder also has a nodes/)
    from comfy.cli_args import args
    args.cpu = cpu
    args.reserve_vram = reserve_vram
    args.use_pytorch_cross_attention = pytorch_attention
    args.base_directory = base  # read when folder_paths is imported, below
    import utils.install_util  # noqa: F401  (ComfyUI's utils package before comfy/utils.py shadows it)

    import nodes
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    missing = [n for n in PACK_NODES if n not in nodes.NODE_CLASS_MAPPINGS]
    if missing:
        raise RuntimeError(f"nodes not registered: {missing}; see the import errors above")
    return nodes


def node_classes() -> dict:
    """ComfyUI's NODE_CLASS_MAPPINGS (after start())."""
    return sys.modules["nodes"].NODE_CLASS_MAPPINGS


def i2v_conditioning(context, clip_fea, concat_latent, references=()):
    """One CONDITIONING row as CLIPTextEncode + WanImageToVideo leave it (the start image in latent frame
    0), then each of `references` ((ref_x, ref_context, ref_clip_fea)) added as VAP Encode Reference does."""
    import comfy.clip_vision
    clip = comfy.clip_vision.Output()
    clip["penultimate_hidden_states"] = clip_fea
    mask = torch.ones_like(concat_latent[:1, :1])
    mask[:, :, 0] = 0.0  # WanImageToVideo's mask: 0 where the start image is given
    cond = [[context, {"concat_latent_image": concat_latent, "concat_mask": mask, "clip_vision_output": clip}]]
    encode = sys.modules[node_classes()["VAPEncodeReference"].__module__]
    for ref_x, ref_context, ref_clip_fea in references:
        cond = encode.with_reference(cond, ref_x, ref_context, ref_clip_fea)
    return cond
