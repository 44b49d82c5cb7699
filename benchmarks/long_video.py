"""Section 3b, run with ComfyUI's Python: the long-video template's sampling (161 frames in stock Wan
Context Windows of 49 frames overlapping by 24, the reference's 49 frames in every window) against an
81-frame video in one call, per output frame, in a real ComfyUI (in-process), alternating.

    COMFY_PYTHON -m benchmarks.long_video COMFYUI_ROOT BASE_DIR REPEATS      (from the pack folder)

Prints one JSON line. A step's time is (time of a 3-step KSampler run - a 1-step run) / 2, so model
loading and the once-per-run work fall out; cfg 5, so each window's call carries both rows."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from benchmarks.comfy_step import CONFIG, write_models
from benchmarks.core import alternate
from benchmarks.flops import call_flops
from devkit.comfy_process import i2v_conditioning, node_classes, start
from vap_core.config import WanConfig

SPATIAL = (16, 16)  # latent height, width: 128x128 pixels
REFERENCE_FRAMES = 13  # 49 frames
WINDOW, OVERLAP = 13, 6  # latent frames: the template's 49 and 24 frames
VIDEOS = {"81 frames, one call": (21, False), "161 frames, context windows": (41, True)}  # latent frames, windowed


def windows(frames: int) -> list[int]:
    """Latent frames of each window's call (ComfyUI 0.33's standard_static windows, each after the first with
    its anchor frame)."""
    starts, start_idx = [], 0
    while start_idx + WINDOW < frames:
        starts.append(start_idx)
        start_idx += WINDOW - OVERLAP
    starts.append(frames - WINDOW)
    return [WINDOW + (s > 0) for s in sorted(set(starts))]


def main(comfy_root: str, base: str, repeats: str):
    nodes = start(comfy_root, base)
    NODE = node_classes()
    unet, expert_name = write_models(Path(base))
    plain = nodes.UNETLoader().load_unet(unet, "default")[0]
    expert = NODE["VAPExpertLoader"].execute(expert_name, "default").result[0]
    vap = NODE["ModelSamplingSD3"]().patch(NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0], 3.0)[0]
    windowed = NODE["WanContextWindowsManual"].execute(vap, 49, 24, "standard_static", 1, False, "pyramid", True,
                                                       False, False).result[0]
    g = torch.Generator().manual_seed(0)

    def conditioning(frames):
        h, w = SPATIAL
        reference = (torch.randn(1, 36, REFERENCE_FRAMES, h, w, generator=g), torch.randn(1, 512, 4096, generator=g),
                     torch.randn(1, 257, 1280, generator=g))
        return i2v_conditioning(torch.randn(1, 512, 4096, generator=g), torch.randn(1, 257, 1280, generator=g),
                                torch.randn(1, 16, frames, h, w, generator=g), [reference])

    graphs = {name: (windowed if in_windows else vap, conditioning(frames), conditioning(frames),
                     {"samples": torch.zeros(1, 16, frames, *SPATIAL)}) for name, (frames, in_windows) in VIDEOS.items()}

    def sample(name, steps):
        model, pos, neg, latent = graphs[name]
        return lambda: nodes.common_ksampler(model, 0, steps, 5.0, "euler", "simple", pos, neg, latent)

    with torch.no_grad():
        med = alternate({f"{name}|{steps}": sample(name, steps) for name in VIDEOS for steps in (1, 3)}, int(repeats))
    cfg = WanConfig(dim=512, num_heads=4, ffn_dim=2048, num_layers=8)
    per_frame_tokens = SPATIAL[0] * SPATIAL[1] // 4
    rows = []
    for name, (frames, in_windows) in VIDEOS.items():
        step = (med[f"{name}|3"] - med[f"{name}|1"]) / 2
        pixels = 4 * (frames - 1) + 1
        calls = windows(frames) if in_windows else [frames]
        flops = sum(call_flops(cfg, f * per_frame_tokens, REFERENCE_FRAMES * per_frame_tokens,
                               len(CONFIG["block_idx_with_mot_ref"]))[1] for f in calls)
        rows.append({"video": name, "frames": pixels, "calls": calls, "step_s": step, "step_s_per_frame": step / pixels,
                     "flops_per_frame": flops / pixels})
    short, long = rows
    print(json.dumps({"rows": rows, "ratio": long["step_s_per_frame"] / short["step_s_per_frame"],
                      "flop_ratio": long["flops_per_frame"] / short["flops_per_frame"]}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
