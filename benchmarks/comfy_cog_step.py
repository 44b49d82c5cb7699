"""Section 3b, run with ComfyUI's Python (0.33 and later): one KSampler step of VAP-CogVideoX against the same step
of ComfyUI's own plain CogVideoX, same backbone, in a real ComfyUI (in-process), next to the FLOP model. Also the
pack's forward with the expert switched off (an empty step window), which is what runs outside the window.

    COMFY_PYTHON -m benchmarks.comfy_cog_step COMFYUI_ROOT BASE_DIR REPEATS      (from the pack folder)

Prints one JSON line. A step's time is (time of a 5-step KSampler run - a 1-step run) / 4."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from benchmarks.cog import call_flops, config
from benchmarks.core import alternate
from devkit.checkpoints import Case, write_random_released_and_wan
from devkit.comfy_process import node_classes, start

HEADS, LAYERS, EXPERT_LAYERS, GRID = 6, 4, [0, 1, 2], (4, 16, 24)  # 13 frames at 192x128, 384 video tokens
NAME = "vap_cog_step_bench"


def write_models(base: Path):
    cfg = config(HEADS, LAYERS, GRID)
    released = Case("cog_small").checkpoint_config(
        num_attention_heads=HEADS, num_layers=LAYERS, block_idx_with_mot_ref=EXPERT_LAYERS, text_embed_dim=cfg.text_dim,
        time_embed_dim=cfg.time_dim, max_text_seq_length=cfg.text_len, sample_frames=cfg.sample_frames,
        sample_height=cfg.sample_height, sample_width=cfg.sample_width)
    unet = base / "models" / "diffusion_models" / f"{NAME}.safetensors"
    if not unet.exists():
        unet.parent.mkdir(parents=True, exist_ok=True)
        write_random_released_and_wan(base / "models" / "vap" / NAME, unet, released, shards=1)
    return cfg, unet.name, f"{NAME}/transformer/diffusion_pytorch_model.safetensors.index.json"


def main(comfy_root: str, base: str, repeats: str):
    nodes = start(comfy_root, base, pytorch_attention=True)  # as on a GPU (see section_comfy_cog)
    NODE = node_classes()
    encode = sys.modules[NODE["VAPEncodeReference"].__module__]
    base, repeats = Path(base), int(repeats)
    cfg, unet, expert_name = write_models(base)
    plain = nodes.UNETLoader().load_unet(unet, "default")[0]
    expert = NODE["VAPExpertLoader"].execute(expert_name, "default").result[0]
    vap = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0]
    off = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.3, 0.3).result[0]
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(1, 16, *GRID)
    image[:, :, :1] = torch.randn(1, 16, 1, *GRID[1:], generator=g)

    def conditioning(with_reference):
        cond = [[torch.randn(1, cfg.text_len, cfg.text_dim, generator=g), {"concat_latent_image": image}]]
        if with_reference:
            cond = encode.with_reference(cond, torch.randn(1, 32, *GRID, generator=g),
                                         torch.randn(1, cfg.text_len, cfg.text_dim, generator=g), None)
        return cond
    graphs = {"plain": (plain, conditioning(False), conditioning(False)),
              "vap": (vap, conditioning(True), conditioning(True)),
              "window_off": (off, conditioning(True), conditioning(True))}
    latent = {"samples": torch.zeros(1, 16, *GRID)}

    def sample(name, steps):
        model, pos, neg = graphs[name]
        return lambda: nodes.common_ksampler(model, 0, steps, 6.0, "euler", "simple", pos, neg, latent)

    with torch.no_grad():
        med = alternate({f"{n}_{s}": sample(n, s) for n in graphs for s in (1, 5)}, repeats)
    step = {n: (med[f"{n}_5"] - med[f"{n}_1"]) / 4 for n in graphs}
    tokens = GRID[0] * GRID[1] * GRID[2] // 4
    flops_plain, flops_vap = call_flops(cfg, tokens, 1, len(EXPERT_LAYERS))
    print(json.dumps({"plain_step_s": step["plain"], "vap_step_s": step["vap"], "off_step_s": step["window_off"],
                      "ratio": step["vap"] / step["plain"], "off_ratio": step["window_off"] / step["plain"],
                      "flop_ratio": flops_vap / flops_plain, "tokens": tokens}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
