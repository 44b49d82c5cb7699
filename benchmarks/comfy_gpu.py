"""Section 7, run with ComfyUI's Python: the ComfyUI path at Wan 2.1 I2V 14B sizes on a GPU. Random
bf16 weights in ComfyUI's Wan layout (loaded with the stock UNETLoader) and an expert of the
released shape (beside layers 0, 4, ..., 36), KSampler at cfg 5 on a 480x832x49 latent: seconds per
step plain and with the expert, against the FLOP model; achieved TFLOP/s; peak VRAM; the same with
fp8 weights; and, with ComfyUI told to keep all but VRAM_GB of the GPU free (--reserve-vram), how
much of each model ComfyUI loaded onto it.

    COMFY_PYTHON -m benchmarks.comfy_gpu COMFYUI_ROOT BASE_DIR SIZE [VRAM_GB]      (from the pack folder)

SIZE: 14b, or tiny (a few seconds on a CPU: how CI keeps this section from rotting). Prints one
JSON line per configuration. A step's time is (a 3-step run - a 1-step run) / 2.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.comfy_step import conditioning
from benchmarks.flops import call_flops
from devkit.checkpoints import write_random_wan_and_expert
from devkit.comfy_process import node_classes, start
from vap_core.config import WanConfig

# name -> (backbone config, expert layers, latent frames/height/width)
SIZES = {"14b": (WanConfig(dim=5120, num_heads=40, ffn_dim=13824, num_layers=40), list(range(0, 40, 4)), (13, 60, 104)),
         "tiny": (WanConfig(dim=256, num_heads=2, ffn_dim=512, num_layers=4), [0, 2], (2, 8, 8))}
# (backbone weight_dtype as UNETLoader names it, expert dtype as VAPExpertLoader names it)
PRECISIONS = (("default", "bf16"), ("fp8_e4m3fn", "fp8_e4m3fn"))


def main(comfy_root: str, base: str, size: str, vram_gb: str | None = None):
    cfg, layers, grid = SIZES[size]
    cuda = torch.cuda.is_available()
    reserve = None
    if cuda and vram_gb is not None:
        reserve = torch.cuda.get_device_properties(0).total_memory / 2**30 - float(vram_gb)
    nodes = start(comfy_root, base, cpu=not cuda, reserve_vram=reserve)
    import comfy.model_management
    NODE = node_classes()
    base = Path(base)
    wan, expert_file = f"vap_gpu_bench_{size}.safetensors", f"vap_gpu_bench_{size}_expert.safetensors"
    if not (base / "models" / "vap" / expert_file).exists():
        write_random_wan_and_expert(base / "models" / "diffusion_models" / wan, base / "models" / "vap" / expert_file,
                                    cfg, layers)
    g = torch.Generator().manual_seed(0)
    conds = {with_ref: (conditioning(g, with_ref, grid), conditioning(g, with_ref, grid)) for with_ref in (False, True)}
    latent = {"samples": torch.zeros(1, 16, *grid)}
    tokens = grid[0] * grid[1] * grid[2] // 4
    flops_plain, flops_vap = (2 * n for n in call_flops(cfg, tokens, tokens, len(layers)))  # cond + uncond rows
    for weight_dtype, expert_dtype in PRECISIONS if reserve is None else PRECISIONS[:1]:
        plain = nodes.UNETLoader().load_unet(wan, weight_dtype)[0]
        expert = NODE["VAPExpertLoader"].execute(expert_file, expert_dtype).result[0]
        models = {False: plain, True: NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0]}
        row = {"size": size, "weights": weight_dtype, "expert": expert_dtype, "tokens": tokens,
               "vram_limit_gb": None if reserve is None else float(vram_gb), "device": _device_name(cuda)}
        for with_ref, label in ((False, "plain"), (True, "vap")):
            pos, neg = conds[with_ref]

            def run(steps):
                began = time.perf_counter()
                nodes.common_ksampler(models[with_ref], 0, steps, 5.0, "euler", "simple", pos, neg, latent)
                if cuda:
                    torch.cuda.synchronize()
                return time.perf_counter() - began
            run(1)  # loads the models
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            row[f"{label}_step_s"] = (run(3) - run(1)) / 2
            row[f"{label}_peak_vram_gb"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        row["loaded"] = {type(m.model.model).__name__: [m.model_loaded_memory() / 2**30, m.model_memory() / 2**30]
                         for m in comfy.model_management.current_loaded_models if m.model is not None}
        row.update(ratio=row["vap_step_s"] / row["plain_step_s"], flop_ratio=flops_vap / flops_plain,
                   plain_tflops=flops_plain / row["plain_step_s"] / 1e12, vap_tflops=flops_vap / row["vap_step_s"] / 1e12)
        print(json.dumps(row), flush=True)
        del plain, expert, models
        comfy.model_management.unload_all_models()


def _device_name(cuda: bool) -> str:
    return torch.cuda.get_device_name() if cuda else "cpu"


if __name__ == "__main__":
    main(*sys.argv[1:5])
