"""Section 1b: vap_core's CogVideoX-I2V, a VAP model call against a plain call, next to its FLOP model.

FLOP model (a multiply-add = 2 FLOP), per row: a layer's linears and attention run over [text; video]
(q, k, v, out and a 4x FFN); with VAP each expert layer adds the reference's linears over its own
[text; video] and widens the one attention to [target ; references]; the reference's time embedding
follows the target's timestep, so it is part of every call. Its patch and text embeddings are computed
once per sampling run and are not.
"""
from __future__ import annotations

import torch

from devkit.checkpoints import random_like
from vap_core import VAPTransformer
from vap_core.cog_config import CogConfig
from vap_core.cog_modules import CogExpert, CogVideoXI2V
from vap_core.loading import module_shapes
from vap_core.vae_grid import video_frames

from .core import alternate

# (name, heads x 64, layers, expert layers, latent frames/height/width): experts on all layers but the last, as
# released
SIZES = [
    ("d384 L4 384+226tok", 6, 4, [0, 1, 2], (4, 16, 24)),
    ("d384 L4 1536+226tok", 6, 4, [0, 1, 2], (4, 32, 48)),
]
TEXT_DIM, TIME_DIM = 256, 128


def config(heads, layers, grid) -> CogConfig:
    f, h, w = grid
    return CogConfig(num_heads=heads, num_layers=layers, text_dim=TEXT_DIM, time_dim=TIME_DIM,
                     sample_frames=video_frames(f), sample_height=h, sample_width=w)


def _linears(cfg: CogConfig, seq: int) -> float:
    d = cfg.dim
    return 2 * seq * (4 * d * d + 8 * d * d) + 2 * 2 * cfg.time_dim * 6 * d  # q k v out, FFN, two LayerNormZero


def _time(cfg: CogConfig) -> float:
    return 2 * (cfg.dim * cfg.time_dim + cfg.time_dim ** 2)


def call_flops(cfg: CogConfig, tokens: int, refs: int, expert_layers: int) -> tuple[float, float]:
    """(plain call, VAP call) FLOP for one row: `tokens` video tokens, `refs` references as long as the target."""
    d, seq = cfg.dim, cfg.text_len + tokens
    embed = 2 * tokens * cfg.in_dim * cfg.patch ** 2 * d + 2 * cfg.text_len * cfg.text_dim * d + _time(cfg)
    layer = _linears(cfg, seq) + 4 * seq * seq * d
    head = 2 * tokens * d * cfg.patch ** 2 * cfg.out_dim + 2 * cfg.time_dim * 2 * d
    plain = embed + cfg.num_layers * layer + head
    joint_extra = refs * _linears(cfg, seq) + 4 * (((1 + refs) * seq) ** 2 - seq * seq) * d
    return plain, plain + refs * _time(cfg) + expert_layers * joint_extra


def random_model(cfg: CogConfig, layers, seed: int = 0) -> VAPTransformer:
    model = VAPTransformer(CogVideoXI2V(cfg, device="meta"), CogExpert(cfg, layers, device="meta"))
    model.load_state_dict(random_like(module_shapes(model), seed, torch.float32), assign=True)
    return model.eval()


def run(repeats: int, sizes=SIZES) -> list[dict]:
    """Per size: plain, VAP with one reference, VAP with two; measured against the FLOP model."""
    rows = []
    for name, heads, layers, expert_layers, grid in sizes:
        cfg = config(heads, layers, grid)
        model = random_model(cfg, expert_layers)
        g = torch.Generator().manual_seed(1)
        r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
        x = r(1, cfg.in_dim, *grid)
        target = {"x": x, "t": torch.full((1,), 500.0), "context": r(1, cfg.text_len, cfg.text_dim)}
        with torch.no_grad():
            refs = [model.embed_reference(r(1, cfg.in_dim, *grid), r(1, cfg.text_len, cfg.text_dim)) for _ in range(2)]
            med = alternate({"plain": lambda: model(**target), "one": lambda: model(**target, reference=refs[:1]),
                             "two": lambda: model(**target, reference=refs)}, repeats)
        tokens = grid[0] * grid[1] * grid[2] // cfg.patch ** 2
        plain, one = call_flops(cfg, tokens, 1, len(expert_layers))
        two = call_flops(cfg, tokens, 2, len(expert_layers))[1]
        rows.append({"size": name, "plain_s": med["plain"], "vap_s": med["one"], "two_s": med["two"],
                     "ratio": med["one"] / med["plain"], "flop_ratio": one / plain,
                     "second_ratio": med["two"] / med["one"], "second_flop_ratio": two / one})
    return rows
