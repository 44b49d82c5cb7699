"""ComfyUI's own multi-GPU split ("MultiGPU CFG Split") with the expert, on the CPU with a second device faked.

    COMFY_PYTHON -m tests.comfyui.multigpu_in_comfy COMFYUI_ROOT BASE_DIR      (from the pack folder)

The one thing faked is the device list: ComfyUI lists ["cpu", "cpu:1"] (torch keeps "cpu:1" tensors on the
CPU), so its own create_multigpu_deepclones makes a clone for "cpu:1" and its sampler splits the cond and uncond
rows between a thread per device. Everything else is ComfyUI's code with the pack's nodes. For the split placed
after and before Apply VAP Expert, prints one JSON line: the bookkeeping (devices and experts of the clones),
which Wan model and which expert each thread ran, and the largest difference from sampling on one device; also
for the split after Apply VAP Expert on VAP Load Checkpoint's backbone and expert, and sampled with VAP Reference
Guider (its three rows per step split between the devices); and with the model moved to the second device by
Select Model Device, placed before or after Apply VAP Expert."""
from __future__ import annotations

import json
import sys
import threading

import torch

from tests.comfyui.golden_in_comfy import conditioning
from devkit.checkpoints import Case
from devkit.comfy_process import node_classes, start
from devkit.tiny_names import EXPERT, UNET

SECOND = torch.device("cpu", 1)


def main(comfy_root: str, base: str):
    nodes = start(comfy_root, base)
    import comfy.model_management
    import comfy.samplers
    from comfy.ldm.wan.model import WanModel

    comfy.model_management.get_all_torch_devices = lambda exclude_current=False: (
        [SECOND] if exclude_current else [torch.device("cpu"), SECOND])
    NODE = node_classes()
    case_in = Case("case_comfy").inputs()
    positive, negative = conditioning(case_in, 0), conditioning(case_in, 1)
    noise = torch.randn(case_in["x"][:1, :16].shape, generator=torch.Generator().manual_seed(0))

    calls = []  # (thread, module) for every Wan model and every expert block's q projection run

    def record(module, args):
        calls.append((threading.get_ident(), module))
    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)

    def sample(model, reference_guidance=False):
        if reference_guidance:  # VAP Reference Guider: three rows per step (cond, uncond, cond without reference)
            guider = NODE["VAPReferenceGuider"].execute(model, positive, negative, 5.0, 2.0, 0.0, 1.0).result[0]
        else:
            guider = comfy.samplers.CFGGuider(model)
            guider.set_conds(positive, negative)
            guider.set_cfg(5.0)
        sampler = comfy.samplers.KSAMPLER(comfy.samplers.k_diffusion_sampling.sample_euler)
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 3)
        return guider, guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, disable_pbar=True, seed=0)

    with torch.no_grad():
        plain = nodes.UNETLoader().load_unet(UNET, "default")[0]
        expert = NODE["VAPExpertLoader"].execute(EXPERT, "default").result[0]
        apply = NODE["VAPApplyExpert"].execute
        split = NODE["MultiGPU_WorkUnits"].execute
        released, released_expert = NODE["VAPCheckpointLoader"].execute(EXPERT, "default", "default").result
        singles = {"Load Diffusion Model": sample(apply(plain, expert, -1, 0.0, 1.0).result[0])[1],
                   "released": sample(apply(released, released_expert, -1, 0.0, 1.0).result[0])[1],
                   "reference guidance": sample(apply(plain, expert, -1, 0.0, 1.0).result[0], True)[1]}
        result = {}
        select = NODE["SelectModelDevice"].execute
        for place in ("after", "before", "after, released checkpoint", "after, reference guidance",
                      "Select Model Device before", "Select Model Device after"):
            if place == "Select Model Device after":
                model = select(apply(plain, expert, -1, 0.0, 1.0).result[0], "gpu:1").result[0]
            elif place == "Select Model Device before":
                model = apply(select(plain, "gpu:1").result[0], expert, -1, 0.0, 1.0).result[0]
            elif place in ("after", "after, reference guidance"):
                model = split(apply(plain, expert, -1, 0.0, 1.0).result[0], 2).result[0]
            elif place == "before":
                model = apply(split(plain, 2).result[0], expert, -1, 0.0, 1.0).result[0]
            else:  # VAPCheckpointLoader's backbone and expert
                model = split(apply(released, released_expert, -1, 0.0, 1.0).result[0], 2).result[0]
            original = released_expert if "released" in place else expert
            guidance = place == "after, reference guidance"
            single = singles["released" if "released" in place else "reference guidance" if guidance
                             else "Load Diffusion Model"]
            calls.clear()
            guider, out = sample(model, guidance)
            main_patcher = guider.model_patcher
            clones = main_patcher.get_additional_models_with_key("multigpu")
            patchers = {"main": main_patcher, **{f"clone{i}": c for i, c in enumerate(clones)}}
            experts = {name: p.get_additional_models_with_key("vap_expert") for name, p in patchers.items()}
            names = {}
            for name, p in patchers.items():
                names[id(p.model.diffusion_model)] = f"wan of {name}"
                for e in experts[name]:
                    for layer in e.model.layers:
                        names[id(e.model.blocks[str(layer)].self_attn.q)] = f"expert of {name}"
            threads = {}
            for thread, module in calls:
                if isinstance(module, WanModel) or id(module) in names:
                    threads.setdefault(thread, set()).add(names.get(id(module), "another Wan model"))
            result[place] = {
                "load_device": str(main_patcher.load_device),
                "clones": [{"load_device": str(c.load_device), "is_multigpu_base_clone": c.is_multigpu_base_clone,
                            "wan_is_main": c.model is main_patcher.model} for c in clones],
                "experts": {name: [{"load_device": str(e.load_device), "is_main": e.model is original.model}
                                   for e in es] for name, es in experts.items()},
                "threads": sorted(sorted(s) for s in threads.values()),
                "difference_from_one_device": float((out - single).abs().max()),
            }
    hook.remove()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
