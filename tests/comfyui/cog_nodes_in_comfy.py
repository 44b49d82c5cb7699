"""The CogVideoX half of the pack's nodes inside a real ComfyUI 0.33, on a random CogVideoX VAE of the real size
(the stock VAELoader builds only that) and the cog_comfy golden case's backbone and expert.

    COMFY_PYTHON -m tests.comfyui.cog_nodes_in_comfy COMFYUI_ROOT BASE_DIR      (from the pack folder)

Checks the layouts VAPCogVideoXImageToVideo and VAPEncodeReference build against VAE encodes done here, then
samples one step with the stock KSampler. Prints one JSON line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from devkit.checkpoints import Case
from devkit.comfy_process import node_classes, start
from devkit.tiny_models import write_cog_vae

VAE_FILE = "cogvideox_vae_random.safetensors"


def dynamic_cfg_steps(model, positive, negative, latent, steps=4, cfg=6.0):
    """VAPReferenceGuider with dynamic_cfg over a short run: per step, the error of the guided prediction against
    uncond + s * (cond - uncond), s as the CogVideoX pipeline computes it, and s."""
    import math

    import comfy.samplers
    seen = []

    def record(args):
        seen.append((args["sigma"], args["cond_denoised"], args["uncond_denoised"], args["denoised"]))
        return args["denoised"]
    m = model.clone()
    m.set_model_sampler_post_cfg_function(record)
    guider = node_classes()["VAPReferenceGuider"].execute(m, positive, negative, cfg, 0.0, 0.0, 1.0, True).result[0]
    sampling = m.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", steps)
    noise = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(2))
    guider.sample(noise, latent["samples"], comfy.samplers.sampler_object("euler"), sigmas, seed=0)
    out = []
    for sigma, cond, uncond, denoised in seen:
        t = float(sampling.timestep(sigma)[0])
        scale = 1 + cfg * (1 - math.cos(math.pi * ((steps - t) / steps) ** 5)) / 2
        out.append({"t": t, "scale": scale, "error": float((denoised - (uncond + scale * (cond - uncond))).abs().max())})
    return out


def main(comfy_root: str, base: str):
    nodes = start(comfy_root, base)
    import comfy.latent_formats
    import folder_paths
    from tests.comfyui.golden_in_comfy import load_case
    NODE = node_classes()
    vae_folder = Path(folder_paths.get_folder_paths("vae")[0])
    vae_folder.mkdir(parents=True, exist_ok=True)
    write_cog_vae(vae_folder / VAE_FILE)
    fmt = comfy.latent_formats.CogVideoX1_5()
    result = {}
    with torch.no_grad():
        vae = nodes.VAELoader().load_vae(VAE_FILE)[0]
        g = torch.Generator().manual_seed(1)
        start_image = torch.rand(1, 40, 56, 3, generator=g)  # stretched to 64x64
        reference = torch.rand(13, 64, 64, 3, generator=g)  # picked evenly to the video's 9 frames
        text = [[torch.randn(1, 226, 4096, generator=g), {}]]
        positive, negative, latent = NODE["VAPCogVideoXImageToVideo"].execute(text, text, vae, start_image, 64, 64, 9,
                                                                             1).result
        concat = positive[0][1]["concat_latent_image"]
        image = torch.nn.functional.interpolate(start_image.movedim(-1, 1), size=(64, 64), mode="bilinear")
        first = vae.encode(image.movedim(1, -1))
        result["target"] = {"latent": list(latent["samples"].shape), "concat": list(concat.shape),
                            "frame0_err": float((concat[:, :, :1] - first[:, :, :1]).abs().max()),
                            "after_frame0_zero": bool((concat[:, :, 1:] == 0).all())}
        positive, negative = NODE["VAPEncodeReference"].execute(positive, negative, vae, reference, text, text).result
        ref = positive[0][1]["model_conds"]["vap_reference"].cond[0][0]
        picked = reference[torch.tensor([0, 1, 3, 4, 6, 7, 9, 10, 12])]  # linspace(0, 12, 9), truncated
        result["reference"] = {
            "x": list(ref.x.shape), "clip_fea": ref.clip_fea is None,
            "latent_err": float((ref.x[:, :16] - fmt.process_in(vae.encode(picked))).abs().max()),
            "frame0_err": float((ref.x[:, 16:, :1] - fmt.process_in(vae.encode(picked[:1]))).abs().max()),
            "after_frame0_zero": bool((ref.x[:, 16:, 1:] == 0).all())}
        # one sampling step on the golden case's tiny CogVideoX (64x64 pixels, 9 frames) with the expert
        _, plain, expert = load_case(nodes, Case("cog_comfy"))
        model = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0]
        samples = nodes.common_ksampler(model, 0, 1, 6.0, "euler", "simple", positive, negative, latent)[0]["samples"]
        result["sampled"] = {"shape": list(samples.shape), "finite": bool(samples.isfinite().all())}
        result["dynamic_cfg"] = dynamic_cfg_steps(model, positive, negative, latent)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
