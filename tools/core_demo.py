"""Run Video-As-Prompt on the built-in tiny model and compare with the oracle (the paper's code).

    python -m tools.core_demo [CASE.safetensors]

The default case (tests/fixtures/oracle/case_small.safetensors, the tests' golden case) holds a tiny VAP transformer with
random weights in the released checkpoint's layout, inputs, and the outputs that the reference
implementation computed from them. Random weights make noise, not video: this checks the math.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open

from devkit.checkpoints import ORACLE, write_released
from vap_core.export import export_expert
from vap_core.model import VAPTransformer

DEFAULT_CASE = ORACLE / "case_small.safetensors"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.core_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("case", nargs="?", default=str(DEFAULT_CASE), help="a golden case file (default: %(default)s)")
    args = parser.parse_args(argv)
    with safe_open(args.case, "pt") as f:
        config = json.loads(f.metadata()["config"])
        t = {k: f.get_tensor(k) for k in f.keys()}
    weights = {k[len("official."):]: v for k, v in t.items() if k.startswith("official.")}  # the oracle's, released layout
    inputs = dict(x=t["in.x"], t=t["in.t"], context=t["in.context"], clip_fea=t["in.clip_fea"])
    ref = dict(ref_x=t["in.ref_x"], ref_context=t["in.ref_context"], ref_clip_fea=t["in.ref_clip_fea"])
    inputs, ref = ({k: v.float() for k, v in d.items()} for d in (inputs, ref))
    with tempfile.TemporaryDirectory() as tmp:
        released = write_released(Path(tmp) / "released", weights, config)
        print(f"released-layout checkpoint: {len(weights)} tensors, expert beside layers "
              f"{config['block_idx_with_mot_ref']} of {config['num_layers']}")
        meta = export_expert(released, Path(tmp) / "expert.safetensors", "bf16")
        print(f"exported the expert alone: layers {meta['layers']}, {meta['dtype']}")
        model = VAPTransformer.from_checkpoint(released)
    with torch.no_grad():
        vap = model(**inputs, **ref)
        plain = model(**inputs)
    err = (vap - t["out.vap"]).abs().max().item()
    print(f"VAP output {tuple(vap.shape)}: max abs error against the oracle {err:.2e}")
    print(f"plain Wan output: max abs error {(plain - t['out.backbone']).abs().max().item():.2e}")
    print(f"effect of the reference video on the output: {(vap - plain).abs().max().item():.2e}")
    ok = err <= 1e-4
    print("OK: matches the oracle" if ok else "MISMATCH: larger than the 1e-4 tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
