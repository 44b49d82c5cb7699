"""Test helpers: the golden cases and checkpoints in the released layout built from them."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import av
import numpy as np

import torch
from safetensors import safe_open

from vap_core.backbone import WanI2V
from vap_core.config import WanConfig
from vap_core.demo import write_released  # noqa: F401  (re-exported for the tests)
from vap_core.expert import VAPExpert
from vap_core.keys import convert_released_name
from vap_core.safetensors_writer import write_streaming

ORACLE = Path(__file__).parent / "fixtures" / "oracle"
CASES = ("case_small", "case_reflen", "case_comfy")


class Case:
    def __init__(self, name):
        self.name = name
        self.path = ORACLE / f"{name}.safetensors"
        with safe_open(str(self.path), "pt") as f:
            self.meta = f.metadata()
            self.tensors = {k: f.get_tensor(k) for k in f.keys()}
        self.config = json.loads(self.meta["config"])

    def group(self, prefix):
        return {k[len(prefix) + 1:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    def inputs(self, with_reference=True):
        x = {k: v.float() for k, v in self.group("in").items()}
        args = dict(x=x["x"], t=x["t"], context=x["context"], clip_fea=x["clip_fea"])
        if with_reference:
            args.update(ref_x=x["ref_x"], ref_context=x["ref_context"], ref_clip_fea=x["ref_clip_fea"])
        return args


def released_names(config: dict) -> list[str]:
    """Every tensor name of a released checkpoint with this config (names taken from case_small)."""
    template = Case("case_small").group("official")
    layers = config["block_idx_with_mot_ref"]
    names = set()
    for name in template:
        if not name.startswith("blocks."):
            names.add(name)
            continue
        idx, rest = name.split(".", 2)[1:]
        if idx != "0":
            continue
        expert = rest.split(".")[0].endswith("_mot_ref")
        for i in (layers if expert else range(config["num_layers"])):
            names.add(f"blocks.{i}.{rest}")
    return sorted(names)


def peak_rss() -> int:
    """This process's peak resident memory (VmHWM), in bytes. ru_maxrss would include a forked
    parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def write_random_released_and_wan(folder: Path, wan_file: Path, config: dict, shards: int = 3) -> dict:
    """write_random_released, plus its backbone in ComfyUI's Wan layout as one file (what the stock
    UNETLoader reads). Returns the sizes."""
    from safetensors.torch import save_file

    from vap_core.released import read_released

    sizes = write_random_released(folder, config, shards)
    tensors = read_released(folder).backbone_tensors()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(wan_file))
    return sizes


def write_random_released(folder: Path, config: dict, shards: int = 3, seed: int = 0) -> dict:
    """A random bf16 checkpoint in the released layout, written one tensor at a time.
    Returns {"expert_bytes": ..., "backbone_bytes": ...}."""
    cfg = WanConfig.from_diffusers(config)
    shapes = {"backbone": {k: tuple(v.shape) for k, v in WanI2V(cfg, device="meta").state_dict().items()},
              "expert": {k: tuple(v.shape) for k, v in
                         VAPExpert(cfg, config["block_idx_with_mot_ref"], device="meta").state_dict().items()}}
    tdir = folder / "transformer"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "config.json").write_text(json.dumps(config))
    names = released_names(config)
    sizes = {"backbone": 0, "expert": 0}
    spec = {}
    for n in names:
        part, wan = convert_released_name(n)
        spec[n] = shapes[part][wan]
        sizes[part] += torch.Size(spec[n]).numel() * 2
    gen = torch.Generator().manual_seed(seed)
    weight_map = {}
    for i in range(shards):
        fname = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]
        write_streaming(tdir / fname, [(n, torch.bfloat16, spec[n]) for n in part],
                        lambda n: (torch.randn(spec[n], generator=gen) * 0.02).to(torch.bfloat16), {})
        weight_map.update({n: fname for n in part})
    (tdir / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return {"expert_bytes": sizes["expert"], "backbone_bytes": sizes["backbone"]}


def write_phone_clip(path: Path, matrix) -> Path:
    """A 3-frame clip stored 64x32 with its top rows white, whose mp4 track display matrix (a, b, c, d)
    says how to show it, as a phone writes a portrait clip: (0, 1, -1, 0) turns it 90 degrees clockwise."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=16, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for _ in range(3):
            image = np.zeros((32, 64, 3), np.uint8)
            image[:4] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") + 4
    at += 4 + (32 if data[at] == 1 else 20) + 8 + 8  # version/flags, times/id/duration, reserved, layer/volume
    a, b, c, d = (v << 16 for v in matrix)  # 16.16 fixed point
    data[at:at + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path
