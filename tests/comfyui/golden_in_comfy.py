"""One model evaluation through ComfyUI's sampler machinery against the paper's output.

    COMFY_PYTHON golden_in_comfy.py COMFYUI_ROOT BASE_DIR

BASE_DIR holds the tiny models (tiny_models.py) and custom_nodes/ with the pack. Loads case_comfy's
backbone with the stock UNETLoader and its released checkpoint with VAPExpertLoader, builds the
conditioning the pack's nodes build from the case's tensors, and evaluates the model once under
CFG (cond and uncond rows, batched and one at a time). Prints one JSON line of max abs errors."""
from __future__ import annotations

import json
import sys

from comfy_process import start

nodes = start(sys.argv[1], sys.argv[2])

import torch  # noqa: E402

import comfy.clip_vision  # noqa: E402
import comfy.latent_formats  # noqa: E402
import comfy.samplers  # noqa: E402
from helpers import Case  # noqa: E402
from tiny_models import EXPERT, UNET  # noqa: E402

NODE = nodes.NODE_CLASS_MAPPINGS
REFERENCE = sys.modules[NODE["VAPEncodeReference"].__module__]


def conditioning(case_in, row):
    """A CONDITIONING row as CLIPTextEncode + WanImageToVideo + VAPEncodeReference would leave it."""
    pad = lambda t: torch.nn.functional.pad(t, (0, 0, 0, 512 - t.shape[1]))  # noqa: E731  umT5's zero padding
    x = case_in["x"]
    clip = comfy.clip_vision.Output()
    clip["penultimate_hidden_states"] = case_in["clip_fea"][row:row + 1]
    mask = torch.ones_like(x[:1, :1])
    mask[:, :, 0] = 0.0  # WanImageToVideo's mask: 0 where the start image is given
    options = {"concat_latent_image": comfy.latent_formats.Wan21().process_out(x[:, 20:]), "concat_mask": mask,
               "clip_vision_output": clip}
    cond = [[pad(case_in["context"][row:row + 1]), options]]
    return REFERENCE.with_reference(cond, case_in["ref_x"][:1], pad(case_in["ref_context"][row:row + 1]),
                                     case_in["ref_clip_fea"][row:row + 1])


def evaluate(model, case_in, batched: bool, calls: int = 1):
    x16, sigma = case_in["x"][:, :16], float(case_in["t"][0]) / 1000.0
    captured = {}

    def keep(args):
        captured["cond"], captured["uncond"] = args["cond_denoised"], args["uncond_denoised"]
        return args["cond"]

    m = model.clone()
    m.set_model_sampler_cfg_function(keep)
    if not batched:
        m.model_options["sampler_calc_cond_batch_function"] = lambda a: [
            comfy.samplers.calc_cond_batch(a["model"], [c], a["input"], a["sigma"], a["model_options"])[0]
            for c in a["conds"]]

    def one_call(denoiser, x, sigmas, extra_args=None, callback=None, disable=None):
        for _ in range(calls):  # the same evaluation `calls` times in one sampling run
            out = denoiser(x16, sigmas[0] * x16.new_ones(x16.shape[0]), **extra_args)
        return out

    guider = comfy.samplers.CFGGuider(m)
    guider.set_conds(conditioning(case_in, 0), conditioning(case_in, 1))
    guider.set_cfg(5.0)
    zeros = torch.zeros_like(x16)
    guider.sample(zeros, zeros, comfy.samplers.KSAMPLER(one_call), torch.tensor([sigma, 0.0]), seed=0)
    # CONST flow matching: denoised = x - sigma * model_output
    return [((x16 - captured[k]) / sigma)[row] for k, row in (("cond", 0), ("uncond", 1))]


with torch.no_grad():
    case = Case("case_comfy")
    case_in = case.inputs()
    plain = nodes.UNETLoader().load_unet(UNET, "default")[0]
    expert = NODE["VAPExpertLoader"].execute(EXPERT, "default").result[0]
    vap = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0]
    off = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.3, 0.3).result[0]
    want, want_plain = case.tensors["out.vap"], case.tensors["out.backbone"]
    result = {"dtype": str(plain.model.get_dtype()), "expert_dtype": str(expert.model.blocks["0"].self_attn.q.weight.dtype)}
    for name, model, reference in (("batched", vap, want), ("one_at_a_time", vap, want), ("window_empty", off, want_plain)):
        rows = evaluate(model, case_in, batched=name != "one_at_a_time")
        result[name] = [float((out - reference[i]).abs().max()) for i, out in enumerate(rows)]
    result["expert_effect"] = float((want - want_plain).abs().max())
    embeddings = []
    hook = expert.model.patch_embedding.register_forward_hook(lambda *a: embeddings.append(1))
    rows = evaluate(vap, case_in, batched=True, calls=3)
    hook.remove()
    result["three_calls"] = [float((out - want[i]).abs().max()) for i, out in enumerate(rows)]
    result["reference_embeddings_in_a_run_of_three_calls"] = len(embeddings)
    print(json.dumps(result))
