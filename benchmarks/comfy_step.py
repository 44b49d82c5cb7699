"""Section 3, run with ComfyUI's Python: one KSampler step of the VAP graph against the same step
of the plain Wan graph, same backbone, in a real ComfyUI (in-process); and one step under
VAPReferenceGuider (reference_cfg 1) against the same guider at 0 (the stock CFGGuider's path).

    COMFY_PYTHON -m benchmarks.comfy_step COMFYUI_ROOT BASE_DIR REPEATS      (from the pack folder)

Prints one JSON line. A step's time is (time of a 5-step KSampler run - a 1-step run) / 4, so
model loading and the once-per-run work (the reference's embedding) fall out."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from benchmarks.core import alternate
from benchmarks.flops import call_flops
from devkit.checkpoints import released_config, write_random_released_and_wan
from devkit.comfy_process import i2v_conditioning, node_classes, start
from vap_core.config import WanConfig

# ComfyUI's modules are imported where used: only after start() has configured ComfyUI (CPU, base folder)

CONFIG = released_config(heads=4, ffn_dim=2048, num_layers=8, expert_layers=[0, 4])
GRID = (3, 32, 32)  # latent frames, height, width: 9 frames at 256x256
NAME = "vap_step_bench"


def write_models(base: Path):
    released = base / "models" / "vap" / NAME
    unet = base / "models" / "diffusion_models" / f"{NAME}.safetensors"
    if not unet.exists():
        write_random_released_and_wan(released, unet, CONFIG, shards=1)
    return unet.name, f"{NAME}/transformer/diffusion_pytorch_model.safetensors.index.json"


def conditioning(g, with_reference: bool, grid=GRID):
    """Positive or negative as WanImageToVideo (+ VAP Encode Reference) leave it, with random tensors."""
    f, h, w = grid
    references = [(torch.randn(1, 36, f, h, w, generator=g), torch.randn(1, 512, 4096, generator=g),
                   torch.randn(1, 257, 1280, generator=g))] if with_reference else []
    return i2v_conditioning(torch.randn(1, 512, 4096, generator=g), torch.randn(1, 257, 1280, generator=g),
                            torch.randn(1, 16, f, h, w, generator=g), references)


def main(comfy_root: str, base: str, repeats: str):
    nodes = start(comfy_root, base)
    import comfy.sample
    import comfy.samplers
    NODE = node_classes()
    base, repeats = Path(base), int(repeats)
    unet, expert_name = write_models(base)
    sd3 = NODE["ModelSamplingSD3"]()
    plain = nodes.UNETLoader().load_unet(unet, "default")[0]
    expert = NODE["VAPExpertLoader"].execute(expert_name, "default").result[0]
    vap = sd3.patch(NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0], 3.0)[0]
    plain = sd3.patch(plain, 3.0)[0]
    g = torch.Generator().manual_seed(0)
    graphs = {"plain": (plain, conditioning(g, False), conditioning(g, False)),
              "vap": (vap, conditioning(g, True), conditioning(g, True))}
    latent = {"samples": torch.zeros(1, 16, *GRID)}

    def sample(name, steps):
        model, pos, neg = graphs[name]
        return lambda: nodes.common_ksampler(model, 0, steps, 5.0, "euler", "simple", pos, neg, latent)

    def guided(reference_cfg, steps):
        _, pos, neg = graphs["vap"]
        guider = NODE["VAPReferenceGuider"].execute(vap, pos, neg, 5.0, reference_cfg, 0.0, 1.0).result[0]
        sigmas = comfy.samplers.calculate_sigmas(vap.get_model_object("model_sampling"), "simple", steps)
        noise = comfy.sample.prepare_noise(latent["samples"], 0)
        return lambda: guider.sample(noise, latent["samples"], comfy.samplers.sampler_object("euler"), sigmas, seed=0)

    runs = {f"{n}_{s}": sample(n, s) for n in graphs for s in (1, 5)}
    runs.update({f"{n}_{s}": guided(r, s) for n, r in (("guided0", 0.0), ("guided1", 1.0)) for s in (1, 5)})
    with torch.no_grad():
        med = alternate(runs, repeats)
    step = {n: (med[f"{n}_5"] - med[f"{n}_1"]) / 4 for n in (*graphs, "guided0", "guided1")}
    cfg = WanConfig(dim=512, num_heads=4, ffn_dim=2048, num_layers=8)
    tokens = GRID[0] * GRID[1] * GRID[2] // 4
    flops_plain, flops_vap = call_flops(cfg, tokens, tokens, len(CONFIG["block_idx_with_mot_ref"]))
    print(json.dumps({"plain_step_s": step["plain"], "vap_step_s": step["vap"], "ratio": step["vap"] / step["plain"],
                      "flop_ratio": flops_vap / flops_plain, "tokens": tokens,
                      "cfg_guider_step_s": step["guided0"], "reference_guided_step_s": step["guided1"],
                      "guidance_ratio": step["guided1"] / step["guided0"],
                      # cond and uncond VAP calls, plus one plain call for cond_noref
                      "guidance_flop_ratio": (2 * flops_vap + flops_plain) / (2 * flops_vap)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
