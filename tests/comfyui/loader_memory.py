"""Peak memory and time of loading: VAPCheckpointLoader on a released checkpoint, the stock
UNETLoader on the same backbone in ComfyUI's layout, VAPExpertLoader on the released checkpoint.
Runs with ComfyUI's Python:

    COMFY_PYTHON -m tests.comfyui.loader_memory COMFYUI_ROOT BASE_DIR {write,released,stock,expert:DTYPE} [wan|cog]

`write` makes the random checkpoint of that family (and its backbone in ComfyUI's layout) in BASE_DIR; the others
load in a fresh process and print one JSON line: the peak RSS added by the load and sizes, in bytes."""
from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import torch

from devkit.checkpoints import Case, released_config, write_random_released_and_wan
from devkit.comfy_process import start
from devkit.measure import peak_rss

# backbones 6x (Wan) and 12x (CogVideoX) their experts
CONFIGS = {"wan": lambda: released_config(heads=8, ffn_dim=4096, num_layers=16, expert_layers=[0, 8]),
           "cog": lambda: Case("cog_small").checkpoint_config(num_attention_heads=12, num_layers=12, time_embed_dim=256,
                                                              text_embed_dim=256, block_idx_with_mot_ref=[0])}


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def size(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) if module is not None else 0


def main(comfy_root: str, base: str, mode: str, family: str = "wan"):
    nodes = start(comfy_root, base)
    base = Path(base)
    NAME = f"vap_memory_test_{family}"
    if mode == "write":
        sizes = write_random_released_and_wan(base / "models" / "vap" / NAME,
                                              base / "models" / "diffusion_models" / f"{NAME}.safetensors",
                                              CONFIGS[family]())
        print(json.dumps(sizes))
        return

    gc.collect()
    reset_peak()
    before = peak_rss()
    began = time.perf_counter()
    with torch.no_grad():
        if mode.startswith("expert:"):
            checkpoint = f"{NAME}/transformer/diffusion_pytorch_model.safetensors.index.json"
            model, expert = None, nodes.NODE_CLASS_MAPPINGS["VAPExpertLoader"].execute(checkpoint, mode[7:]).result[0]
        elif mode == "released":
            checkpoint = f"{NAME}/transformer/diffusion_pytorch_model.safetensors.index.json"
            model, expert = nodes.NODE_CLASS_MAPPINGS["VAPCheckpointLoader"].execute(checkpoint, "default", "default").result
        else:
            model, expert = nodes.UNETLoader().load_unet(f"{NAME}.safetensors", "default")[0], None
    seconds = time.perf_counter() - began
    peak = peak_rss() - before
    print(json.dumps({"peak_added": peak, "seconds": seconds,
                      "model_bytes": size(model.model.diffusion_model if model is not None else None),
                      "expert_bytes": size(expert.model if expert is not None else None)}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
