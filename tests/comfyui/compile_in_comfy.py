"""Sampling with the expert under stock TorchCompileModel: what torch.compile (re)compiles, step by step.

    COMFY_PYTHON -m tests.comfyui.compile_in_comfy COMFYUI_ROOT BASE_DIR      (from the pack folder)

Loads the tiny backbone and expert as golden_in_comfy does, applies the expert, then TorchCompileModel with
the "eager" backend (dynamo's tracing, guards and graph breaks are the same for every backend; eager needs
no C++ compiler and is quick on the CPU), and samples twice with cfg (cond and uncond rows in one call).
Prints one JSON line: frames dynamo compiled after each step of each run, the graph breaks and recompile
reasons it logged."""
from __future__ import annotations

import json
import logging
import re
import sys

import torch

from tests.comfyui.golden_in_comfy import conditioning
from devkit.checkpoints import Case
from devkit.comfy_process import node_classes, start
from devkit.tiny_names import EXPERT, UNET


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main(comfy_root: str, base: str):
    # PyTorch's attention, as on a GPU: ComfyUI's CPU default (sub-quadratic) breaks graphs on its own, reading
    # free memory with psutil
    nodes = start(comfy_root, base, pytorch_attention=True)
    import comfy.sample
    import comfy.samplers
    import comfy_extras.nodes_torch_compile as torch_compile
    from torch._dynamo.utils import counters

    NODE = node_classes()
    torch._logging.set_logs(recompiles=True, graph_breaks=True)
    collect = Collect()
    logging.getLogger("torch._dynamo").addHandler(collect)  # its children's records (guards, ...) come up to it
    with torch.no_grad():
        case_in = Case("case_comfy").inputs()
        plain = nodes.UNETLoader().load_unet(UNET, "default")[0]
        expert = NODE["VAPExpertLoader"].execute(EXPERT, "default").result[0]
        vap = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0]
        compiled = torch_compile.TorchCompileModel.execute(vap, "eager").result[0]
        positive, negative = conditioning(case_in, 0), conditioning(case_in, 1)
        noise = torch.randn(case_in["x"][:1, :16].shape, generator=torch.Generator().manual_seed(0))
        latent = torch.zeros_like(noise)

        def sample(model, callback=None):
            return comfy.sample.sample(model, noise, 4, 5.0, "euler", "simple", positive, negative, latent,
                                       callback=callback, disable_pbar=True, seed=0)

        def compiled_per_step():
            """Sample with the compiled model; the output, and how many frames dynamo compiled in each step."""
            frames, before = [], counters["frames"]["ok"]
            out = sample(compiled, lambda *args: frames.append(counters["frames"]["ok"] - before - sum(frames)))
            return out, frames
        # a second run of the same model: its own per-run cache, the same compiled code
        outputs, runs = zip(*(compiled_per_step() for _ in range(2)))
        # the compiled model computes what the plain one does, also with the expert on for the first half only
        differences = {"full": [float((out - sample(vap)).abs().max()) for out in outputs]}
        half = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 0.5).result[0]
        half_compiled = torch_compile.TorchCompileModel.execute(half, "eager").result[0]
        differences["first_half"] = float((sample(half_compiled) - sample(half)).abs().max())
        # TorchCompileModel before Apply VAP Expert instead of after it
        compiled_first = NODE["VAPApplyExpert"].execute(torch_compile.TorchCompileModel.execute(plain, "eager").result[0],
                                                        expert, -1, 0.0, 1.0).result[0]
        differences["compiled_before_apply"] = float((sample(compiled_first) - outputs[0]).abs().max())
        differences["expert_effect"] = float((sample(half) - outputs[0]).abs().max())
    breaks = sorted({f"{path.split('ComfyUI-Video-As-Prompt/')[-1]}:{line}" for m in collect.messages
                     for path, line in re.findall(r"[Gg]raph break.* in user code at (\S+):(\d+)", m)})
    recompiles = [m.splitlines()[0:3] for m in collect.messages if m.startswith("Recompiling")]
    print(json.dumps({"frames_compiled_per_step": list(runs), "differences": differences, "graph_breaks": sum(counters["graph_break"].values()),
                      "graph_break_sites": breaks, "recompiles": recompiles}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
