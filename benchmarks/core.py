"""Section 1: vap_core standalone, a VAP model call against a plain Wan call, next to the FLOP model."""
from __future__ import annotations

import statistics
import time

import torch

from devkit.checkpoints import random_like
from vap_core import VAPExpert, VAPTransformer, WanConfig, WanI2V
from vap_core.loading import module_shapes

from .flops import call_flops

# (name, width, heads, FFN, layers, expert layers, latent frames/height/width per stream)
SIZES = [
    ("d512 L2 256tok", 512, 4, 2048, 2, [0], (4, 16, 16)),
    ("d512 L8 1024tok", 512, 4, 2048, 8, [0, 4], (4, 32, 32)),
    ("d1024 L2 4096tok", 1024, 8, 4096, 2, [0], (4, 32, 128)),
]


def random_model(cfg: WanConfig, layers, seed: int = 0, device=None, dtype=torch.float32) -> VAPTransformer:
    """Random weights (devkit.checkpoints' rule), float32 on the CPU by default."""
    model = VAPTransformer(WanI2V(cfg, device="meta"), VAPExpert(cfg, layers, device="meta"))
    weights = {name: t.to(device) for name, t in random_like(module_shapes(model), seed, dtype).items()}
    model.load_state_dict(weights, assign=True)
    return model.eval()


def random_inputs(cfg: WanConfig, grid: tuple, batch: int = 1, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    f, h, w = grid
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return {"x": r(batch, cfg.in_dim, f, h, w), "t": torch.full((batch,), 500.0),
            "context": r(batch, cfg.text_len, cfg.text_dim), "clip_fea": r(batch, 257, cfg.image_dim),
            "ref_x": r(1, cfg.in_dim, f, h, w), "ref_context": r(batch, cfg.text_len, cfg.text_dim),
            "ref_clip_fea": r(1, 257, cfg.image_dim)}


def alternate(calls: dict, repeats: int) -> dict:
    """Median seconds of each callable, run in turns (one warm-up each), so drift hits all alike."""
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def run_references(repeats: int, size=SIZES[1], counts=(1, 2, 3)) -> list[dict]:
    """VAP calls with 1, 2, 3 references (each as long as the target, placement sequential) against
    one reference, next to the FLOP model."""
    name, dim, heads, ffn, layers, expert_layers, grid = size
    cfg = WanConfig(dim=dim, num_heads=heads, ffn_dim=ffn, num_layers=layers)
    model = random_model(cfg, expert_layers)
    inputs = [random_inputs(cfg, grid, seed=n + 1) for n in range(max(counts))]
    target = {k: inputs[0][k] for k in ("x", "t", "context", "clip_fea")}
    tokens = grid[0] * grid[1] * grid[2] // 4
    with torch.no_grad():
        refs = [model.embed_reference(i["ref_x"], i["ref_context"], i["ref_clip_fea"]) for i in inputs]
        med = alternate({n: (lambda n=n: model(**target, reference=refs[:n])) for n in counts}, repeats)
    flops = {n: call_flops(cfg, tokens, [tokens] * n, len(expert_layers))[1] for n in counts}
    return [{"size": name, "references": n, "s": med[n], "ratio": med[n] / med[1], "flop_ratio": flops[n] / flops[1]}
            for n in counts]


def run(repeats: int, sizes=SIZES) -> list[dict]:
    rows = []
    for name, dim, heads, ffn, layers, expert_layers, grid in sizes:
        cfg = WanConfig(dim=dim, num_heads=heads, ffn_dim=ffn, num_layers=layers)
        model = random_model(cfg, expert_layers)
        inp = random_inputs(cfg, grid)
        target = {k: inp[k] for k in ("x", "t", "context", "clip_fea")}
        with torch.no_grad():
            reference = model.embed_reference(inp["ref_x"], inp["ref_context"], inp["ref_clip_fea"])
            med = alternate({"plain": lambda: model(**target), "vap": lambda: model(**target, reference=reference)},
                            repeats)
        tokens = grid[0] * grid[1] * grid[2] // 4
        plain_flops, vap_flops = call_flops(cfg, tokens, tokens, len(expert_layers))
        rows.append({"size": name, "plain_s": med["plain"], "vap_s": med["vap"], "ratio": med["vap"] / med["plain"],
                     "flop_ratio": vap_flops / plain_flops, "vap_gflops": vap_flops / med["vap"] / 1e9})
    return rows
