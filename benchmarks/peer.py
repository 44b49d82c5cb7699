"""Section 2: vap_core against DiffSynth-Studio's VAP at equal sizes: time per call (the two run in
turns in one process) and peak RSS (each in a fresh process: python -m benchmarks.peer rss WHO SIZE)."""
from __future__ import annotations

import json
import subprocess
import sys

import torch

from devkit.measure import peak_rss
from vap_core import WanConfig

from . import diffsynth_peer
from .core import alternate, random_inputs, random_model

# (name, width, heads, FFN, layers, expert layers, latent frames/height/width per stream)
SIZES = [
    ("d256 L2 256tok", 256, 2, 1024, 2, [0], (4, 16, 16)),
    ("d512 L4 1024tok", 512, 4, 2048, 4, [0], (4, 32, 32)),
    ("d1024 L2 2048tok", 1024, 8, 4096, 2, [0], (4, 32, 64)),
]


def _setup(who: str, size):
    name, dim, heads, ffn, layers, expert_layers, grid = size
    cfg = WanConfig(dim=dim, num_heads=heads, ffn_dim=ffn, num_layers=layers)
    inp = random_inputs(cfg, grid)
    inp["ref_context"] = inp["ref_context"][:1]
    target = {k: inp[k] for k in ("x", "t", "context", "clip_fea")}
    if who == "ours":
        model = random_model(cfg, expert_layers)
        with torch.no_grad():  # once per sampling run, as the pack does
            reference = model.embed_reference(inp["ref_x"], inp["ref_context"], inp["ref_clip_fea"])
        return lambda: model(**target, reference=reference)
    if who == "ours_embedding_each_call":  # DiffSynth embeds the reference at every call
        model = random_model(cfg, expert_layers)
        return lambda: model(**target, ref_x=inp["ref_x"], ref_context=inp["ref_context"],
                             ref_clip_fea=inp["ref_clip_fea"])
    peer = diffsynth_peer.build(dim, heads, ffn, layers, expert_layers)
    return lambda: peer(**target, ref_x=inp["ref_x"], ref_context=inp["ref_context"], ref_clip_fea=inp["ref_clip_fea"])


def run(repeats: int, sizes=SIZES) -> list[dict] | str:
    ok, why = diffsynth_peer.available()
    if not ok:
        return why
    rows = []
    for size in sizes:
        calls = {who: _setup(who, size) for who in ("ours", "ours_embedding_each_call", "diffsynth")}
        with torch.no_grad():
            med = alternate(calls, repeats)
        del calls
        rss = {who: _rss_in_fresh_process(who, size[0]) for who in ("ours", "diffsynth")}
        rows.append({"size": size[0], "ours_s": med["ours"], "ours_each_s": med["ours_embedding_each_call"],
                     "diffsynth_s": med["diffsynth"],
                     "speedup": med["diffsynth"] / med["ours"], "ours_rss": rss["ours"], "diffsynth_rss": rss["diffsynth"]})
    return rows


def _rss_in_fresh_process(who: str, size_name: str) -> int:
    out = subprocess.run([sys.executable, "-m", "benchmarks.peer", "rss", who, size_name], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_added"]


def _rss_main(who: str, size_name: str):
    size = next(s for s in SIZES if s[0] == size_name)
    diffsynth_peer.available()  # both processes import the same libraries before measuring
    before = peak_rss()
    call = _setup(who, size)
    with torch.no_grad():
        call()
    print(json.dumps({"peak_added": peak_rss() - before}))


if __name__ == "__main__" and sys.argv[1:2] == ["rss"]:
    _rss_main(sys.argv[2], sys.argv[3])
