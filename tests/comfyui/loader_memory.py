"""Peak memory and time of loading: VAPCheckpointLoader on a released checkpoint, the stock
UNETLoader on the same backbone in ComfyUI's layout, VAPExpertLoader on the released checkpoint.
Runs with ComfyUI's Python:

    COMFY_PYTHON -m tests.comfyui.loader_memory COMFYUI_ROOT BASE_DIR {write,released,stock,expert:DTYPE}

`write` makes the random checkpoint (and its Wan-layout copy) in BASE_DIR; the others load in a
fresh process and print one JSON line: the peak RSS added by the load and sizes, in bytes."""
from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import torch

from devkit.checkpoints import released_config, write_random_released_and_wan
from devkit.comfy_process import start
from devkit.measure import peak_rss

CONFIG = released_config(heads=8, ffn_dim=4096, num_layers=16, expert_layers=[0, 8])
NAME = "vap_memory_test"


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def size(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) if module is not None else 0


def main(comfy_root: str, base: str, mode: str):
    nodes = start(comfy_root, base)
    base = Path(base)
    if mode == "write":
        sizes = write_random_released_and_wan(base / "models" / "vap" / NAME,
                                              base / "models" / "diffusion_models" / f"{NAME}.safetensors", CONFIG)
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
    main(*sys.argv[1:4])
