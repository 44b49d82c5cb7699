"""The golden cases (tests/fixtures/oracle, computed by the oracle: the paper's code) and checkpoints in the
real layouts written from them or with random weights, for the tests, the demos and the benchmarks."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vap_core.backbone import WanI2V
from vap_core.config import WanConfig
from vap_core.expert import EXPERTS, VAPExpert
from vap_core.loading import module_shapes
from vap_core.released import FAMILIES, family_of, read_released
from vap_core.safetensors_writer import write_streaming

ORACLE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "oracle"
CASES = ("case_small", "case_reflen", "case_comfy")


class Case:
    def __init__(self, name, path: Path | None = None):
        """The fixture `name`, or the case file at `path` (a case kept elsewhere)."""
        self.name = name
        self.path = path or ORACLE / f"{name}.safetensors"
        with safe_open(str(self.path), "pt") as f:
            self.meta = f.metadata()
            self.tensors = {k: f.get_tensor(k) for k in f.keys()}
        self.config = json.loads(self.meta["config"])

    @property
    def family(self) -> str:
        """"cog" for a CogVideoX case (its config has a time_embed_dim), else "wan"."""
        return "cog" if "time_embed_dim" in self.config else "wan"

    def checkpoint_config(self, **changes) -> dict:
        """The case's config as its released checkpoint's config.json holds it (a CogVideoX one names its class, which
        the cases' configs leave out), with `changes`."""
        named = {"_class_name": "CogVideoXTransformer3DMOTModel"} if self.family == "cog" else {}
        return {**self.config, **named, **changes}

    def released_weights(self) -> dict:
        """The oracle's whole VAP transformer in the released checkpoint's layout (the fixture's `official.*`)."""
        return self.group("official")

    def group(self, prefix):
        return {k[len(prefix) + 1:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    def inputs(self, with_reference=True):
        x = {k: v.float() for k, v in self.group("in").items()}
        args = dict(x=x["x"], t=x["t"], context=x["context"], clip_fea=x["clip_fea"])
        if with_reference:
            args.update(ref_x=x["ref_x"], ref_context=x["ref_context"], ref_clip_fea=x["ref_clip_fea"])
        return args


def write_released(folder: Path, tensors: dict, config: dict, shards: int = 1) -> Path:
    """Write tensors as a released checkpoint: folder/transformer/config.json beside one file or shards."""
    tdir = folder / "transformer"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "config.json").write_text(json.dumps(config))
    names = sorted(tensors)
    if shards == 1:
        save_file({k: tensors[k].contiguous() for k in names}, str(tdir / "diffusion_pytorch_model.safetensors"))
        return folder
    _write_shards(tdir, names, shards, lambda path, part: save_file({k: tensors[k].contiguous() for k in part}, str(path)))
    return folder


def _write_shards(tdir: Path, names: list, shards: int, write):
    """The released layout's shard files and their index json; write(path, names) writes one file."""
    weight_map = {}
    for i in range(shards):
        fname = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]  # interleaved, so expert and backbone tensors share every shard
        write(tdir / fname, part)
        weight_map.update({k: fname for k in part})
    (tdir / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


# per family: the case whose names a random checkpoint of any size takes, and the prefix of its layers
TEMPLATES = {"wan": ("case_small", "blocks"), "cog": ("cog_small", "transformer_blocks")}


def released_names(config: dict) -> list[str]:
    """Every tensor name of a released checkpoint with this config (names taken from its family's small case)."""
    case, blocks = TEMPLATES[family_of(config, "config")]
    layers = config["block_idx_with_mot_ref"]
    names = set()
    for name in Case(case).released_weights():
        if not name.startswith(blocks + "."):
            names.add(name)
            continue
        idx, rest = name.split(".", 2)[1:]
        if idx != "0":
            continue
        expert = rest.split(".")[0].endswith("_mot_ref")
        for i in (layers if expert else range(config["num_layers"])):
            names.add(f"{blocks}.{i}.{rest}")
    return sorted(names)


def random_tensor(name: str, shape, generator: torch.Generator) -> torch.Tensor:
    """One random float32 weight by the one rule every random model here follows: scaled by fan-in,
    so activations stay in range; norm scales and vectors 1, biases 0."""
    if name.endswith("bias"):
        return torch.zeros(shape)
    if len(shape) <= 1 or name.endswith(("gamma", "layer_norm1.weight", "layer_norm2.weight")) or "norm" in name:
        return torch.ones(shape)
    return torch.randn(shape, generator=generator) / math.sqrt(max(1, math.prod(shape[1:])))


def random_like(shapes: dict, seed: int, dtype=torch.bfloat16) -> dict:
    """Random weights (random_tensor) of these shapes, name -> tensor."""
    g = torch.Generator().manual_seed(seed)
    return {name: random_tensor(name, shape, g).to(dtype) for name, shape in shapes.items()}


def released_config(*, heads: int, ffn_dim: int, num_layers: int, expert_layers: list[int], text_dim: int = 4096,
                     image_dim: int = 1280, added_kv_proj_dim: int = 1280) -> dict:
    """A released checkpoint's transformer/config.json (diffusers' names) for random weights: Wan 2.1 I2V's
    fixed fields, heads of width 128, and the expert beside `expert_layers`."""
    return {"num_attention_heads": heads, "attention_head_dim": 128, "in_channels": 36, "out_channels": 16,
            "text_dim": text_dim, "image_dim": image_dim, "freq_dim": 256, "ffn_dim": ffn_dim, "num_layers": num_layers,
            "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "patch_size": [1, 2, 2],
            "added_kv_proj_dim": added_kv_proj_dim, "block_idx_with_mot_ref": expert_layers}


def write_random_released(folder: Path, config: dict, shards: int = 3, seed: int = 0) -> dict:
    """A random bf16 checkpoint in the released layout (of either family: see config's _class_name), written one
    tensor at a time.
    Returns {"expert_bytes": ..., "backbone_bytes": ...}."""
    family = family_of(config, "config")
    cfg = FAMILIES[family].config.from_diffusers(config)
    shapes = {"backbone": module_shapes(FAMILIES[family].backbone(cfg, device="meta")),
              "expert": module_shapes(EXPERTS[family](cfg, config["block_idx_with_mot_ref"], device="meta"))}
    tdir = folder / "transformer"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "config.json").write_text(json.dumps(config))
    names = released_names(config)
    sizes = {"backbone": 0, "expert": 0}
    spec = {}
    for n in names:
        part, wan = FAMILIES[family].convert_name(n)
        spec[n] = shapes[part][wan]
        sizes[part] += torch.Size(spec[n]).numel() * 2
    gen = torch.Generator().manual_seed(seed)
    _write_shards(tdir, names, shards, lambda path, part: write_streaming(
        path, [(n, torch.bfloat16, spec[n]) for n in part], lambda n: random_tensor(n, spec[n], gen).to(torch.bfloat16), {}))
    return {"expert_bytes": sizes["expert"], "backbone_bytes": sizes["backbone"]}


def write_random_released_and_wan(folder: Path, wan_file: Path, config: dict, shards: int = 3) -> dict:
    """write_random_released, plus its backbone in ComfyUI's Wan layout as one file (what the stock
    UNETLoader reads). Returns the sizes."""
    sizes = write_random_released(folder, config, shards)
    tensors = read_released(folder).backbone_tensors()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(wan_file))
    return sizes


def write_random_wan_and_expert(wan_file: Path, expert_file: Path, cfg: WanConfig, layers, seed: int = 0) -> dict:
    """A random bf16 Wan 2.1 I2V file in ComfyUI's layout (what the stock UNETLoader reads) and an expert
    file in the pack's format, each written one tensor at a time (so 14B sizes fit in memory).
    Returns their sizes in bytes."""
    gen = torch.Generator().manual_seed(seed)
    return {"backbone_bytes": _write_random(wan_file, WanI2V(cfg, device="meta"), {}, gen),
            "expert_bytes": write_random_expert(expert_file, cfg, layers, gen)}


def write_random_expert(path: Path, cfg: WanConfig, layers, gen: torch.Generator) -> int:
    """A random bf16 expert file in the pack's format for a backbone of `cfg`; its size in bytes."""
    from vap_core.expert import expert_metadata
    return _write_random(path, VAPExpert(cfg, layers, device="meta"),
                         expert_metadata(cfg, layers, "random weights", "", "bf16"), gen)


def _write_random(path: Path, module, metadata: dict, gen: torch.Generator) -> int:
    shapes = module_shapes(module)
    write_streaming(path, [(n, torch.bfloat16, s) for n, s in shapes.items()],
                    lambda n: random_tensor(n, shapes[n], gen).to(torch.bfloat16), metadata)
    return sum(torch.Size(s).numel() * 2 for s in shapes.values())
