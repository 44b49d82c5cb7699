"""Section 1: vap_core standalone, a VAP model call against a plain Wan call, next to the FLOP model."""
from __future__ import annotations

import statistics
import time

import torch

from vap_core import VAPExpert, VAPTransformer, WanConfig, WanI2V

from .flops import call_flops

# (name, width, heads, FFN, layers, expert layers, latent frames/height/width per stream)
SIZES = [
    ("d512 L2 256tok", 512, 4, 2048, 2, [0], (4, 16, 16)),
    ("d512 L8 1024tok", 512, 4, 2048, 8, [0, 4], (4, 32, 32)),
    ("d1024 L2 4096tok", 1024, 8, 4096, 2, [0], (4, 32, 128)),
]


def random_model(cfg: WanConfig, layers, seed: int = 0, device=None, dtype=None) -> VAPTransformer:
    """Random weights scaled by fan-in so activations stay in range (float32 on the CPU by default)."""
    torch.manual_seed(seed)
    model = VAPTransformer(WanI2V(cfg, device=device, dtype=dtype), VAPExpert(cfg, layers, device=device, dtype=dtype))
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn_like(p) / fan_in ** 0.5 if p.ndim > 1 else torch.ones_like(p) if "norm" in name
                    else torch.randn_like(p) * 0.02)
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
