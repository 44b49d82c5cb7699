"""Section 5: vap_core at Wan 2.1 I2V 14B sizes on a GPU (random bf16 weights): time per model call
and per sampling step (cfg: two rows), plain and VAP, and the achieved share of peak bf16 FLOP/s."""
from __future__ import annotations

import torch

from vap_core import WanConfig

from .core import alternate, random_model
from .flops import call_flops

WAN_14B = WanConfig(dim=5120, num_heads=40, ffn_dim=13824, num_layers=40)
EXPERT_LAYERS = list(range(0, 40, 4))  # the released expert: beside layers 0, 4, ..., 36
GRID = (13, 60, 104)  # 49 frames at 480x832, in latent frames/height/width
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, SXM parts


def run(repeats: int, cfg: WanConfig = WAN_14B, layers=EXPERT_LAYERS, grid=GRID, device="cuda"):
    model = random_model(cfg, layers, device=device, dtype=torch.bfloat16)
    f, h, w = grid
    rows = 2  # one sampling step under CFG: the cond and uncond rows in one batch
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device=device)  # noqa: E731
    target = {"x": r(rows, cfg.in_dim, f, h, w), "t": torch.full((rows,), 500.0, device=device),
              "context": r(rows, cfg.text_len, cfg.text_dim), "clip_fea": r(rows, 257, cfg.image_dim)}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        reference = model.embed_reference(r(1, cfg.in_dim, f, h, w), r(rows, cfg.text_len, cfg.text_dim),
                                          r(1, 257, cfg.image_dim), batch=rows)

        def timed(**extra):
            def call():
                model(**target, **extra)
                sync()
            return call
        med = alternate({"plain": timed(), "vap": timed(reference=reference)}, repeats)
    tokens = f * h * w // 4
    plain_flops, vap_flops = (rows * n for n in call_flops(cfg, tokens, tokens, len(layers)))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"device: {name}; {tokens} tokens per stream, batch {rows} (one CFG step)\n")
    print("| | s/step | PFLOP/step | TFLOP/s | share of peak bf16 |")
    print("|---|---|---|---|---|")
    for label, flops, seconds in (("plain Wan", plain_flops, med["plain"]), ("VAP", vap_flops, med["vap"])):
        share = f"{flops / seconds / 1e12 / peak:.0%} of {peak:.0f}" if peak else "n/a"
        print(f"| {label} | {seconds:.2f} | {flops / 1e15:.3f} | {flops / seconds / 1e12:.0f} | {share} |")
    print(f"\nVAP / plain: measured {med['vap'] / med['plain']:.3f}, FLOP model {vap_flops / plain_flops:.3f}")
