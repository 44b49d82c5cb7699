"""The complete VAP transformer (a frozen backbone + its expert), for plain-Python use and tests: Wan 2.1 I2V 14B
or CogVideoX-I2V-5B, the family read from the checkpoint. The backbone and expert classes of each family say what
differs (their streams, layers and RoPE); the call itself is one for both."""
from __future__ import annotations

import torch
from torch import nn

from .backbone import load_wan_file
from .errors import InputError
from .expert import expert_source, load_expert
from .expert_pass import ExpertPass
from .host import TORCH_HOST
from .loading import load_strict
from .released import FAMILIES, read_released


class VAPTransformer(nn.Module):
    def __init__(self, backbone, expert, host=TORCH_HOST, where: str = "the expert"):
        super().__init__()
        if expert is not None:
            expert.check_fits(backbone.cfg, where)
        self.backbone = backbone
        self.expert = expert
        self.host = host

    @property
    def cfg(self):
        return self.backbone.cfg

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.caller().weight_dtype

    @classmethod
    def from_checkpoint(cls, path, dtype=torch.float32) -> "VAPTransformer":
        """Load a released checkpoint (diffusers layout: transformer/config.json + safetensors), of either family."""
        rel = read_released(path)
        source = expert_source(rel)
        source.empty()  # checks the expert's layers before any tensor is read
        backbone = load_strict(FAMILIES[rel.cfg.family].backbone(rel.cfg, device="meta"), rel.tensors, rel.backbone_names,
                               f"{path} (backbone)", dtype)
        return cls(backbone, source.load(dtype))

    @classmethod
    def from_files(cls, wan_path, expert_path=None, dtype=torch.float32) -> "VAPTransformer":
        """Pair a Wan 2.1 I2V file in ComfyUI's layout with an expert: the pack's expert-only file, or any
        source expert.load_expert takes."""
        if expert_path is None:
            return cls(load_wan_file(wan_path, dtype), None)
        expert, _ = load_expert(expert_path, dtype)
        where = f"expert {expert_path} paired with {wan_path}"
        # the fit is checked on the backbone's shapes, before its weights are read
        backbone = load_wan_file(wan_path, dtype, num_heads=expert.cfg.num_heads,
                                 check=lambda cfg: expert.check_fits(cfg, where))
        return cls(backbone, expert, where=where)

    def forward(self, x, t, context, clip_fea=None, ref_x=None, ref_context=None, ref_clip_fea=None,
                ref_t=None, rope_delta=None, reference=None, placement="sequential"):
        """Target prediction (B, out_dim, F, H, W), in ComfyUI's latent layout. clip_fea: Wan's CLIP tokens of the
        start image (CogVideoX has none). With no reference this is the plain backbone. Several references: lists
        of ref_x / ref_context / ref_clip_fea (see expert_pass for `placement`). ref_t: the reference's timestep,
        by default the paper's (Wan: the constant 1; CogVideoX: the target's t). In a sampling loop, embed the
        references once (embed_reference) and pass them as `reference` at every step."""
        backbone = self.backbone.caller()
        b = backbone.check_target(x, context, clip_fea)
        if ref_x is not None:
            reference = self.embed_reference(ref_x, ref_context, ref_clip_fea, b, ref_t)
        references = None if reference is None else reference if isinstance(reference, list) else [reference]
        return run_call(backbone, self.expert, self.host, x, t, context, clip_fea, references,
                        placement=placement, rope_delta=rope_delta)

    def embed_reference(self, ref_x, ref_context, ref_clip_fea=None, batch: int = 1, ref_t=None):
        """The embedded reference(s) for a target batch of `batch` rows (each ref_x may have 1 row or
        `batch`): one, or a list of them when given lists."""
        if self.expert is None:
            raise InputError("a reference was given but this model has no expert: load it with from_checkpoint "
                             "or from_files(wan, expert).")
        several = isinstance(ref_x, (list, tuple))
        clips = ref_clip_fea if ref_clip_fea is not None or not several else [None] * len(ref_x)
        if not several:
            inputs = [(ref_x, ref_context, ref_clip_fea)]
        elif all(isinstance(v, (list, tuple)) and len(v) == len(ref_x) for v in (ref_context, clips)):
            inputs = list(zip(ref_x, ref_context, clips))
        else:
            raise InputError("several references need ref_x, ref_context (and for Wan ref_clip_fea) as lists of the "
                             "same length.")
        embedded = []
        for one_x, one_context, one_clip in inputs:
            one_x, one_context, one_clip = self.backbone.caller().check_reference(batch, one_x, one_context, one_clip)
            row_t = None if ref_t is None else _per_row("ref_t", ref_t, batch, one_x.device)
            embedded.append(self.expert.embed_reference(one_x, one_context, one_clip, self.dtype, row_t))
        return embedded if several else embedded[0]


def _per_row(name, t, b, device):
    t = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() not in (1, b):
        raise InputError(f"{name} has {t.numel()} values; give one timestep, or one per row of x ({b}).")
    return t.expand(b)


def run_call(backbone, expert, host, x, t, context, clip_fea=None, references=None, *, placement="sequential",
             rope_delta=None):
    """One model call of either family: the target through every layer, the expert layers jointly with the
    embedded references (None: the plain backbone). `backbone`: a module's caller() (WanI2V, CogBackbone), which
    may be a view of the host's own modules; the result in the latent layout (B, C, F, H, W)."""
    b = backbone.check_target(x, context, clip_fea)
    t = _per_row("t", t, b, x.device)
    grid = backbone.token_grid(x)

    def rope_freqs(g, t_start):
        return backbone.rope(g, t_start, x.device)

    target, temb = backbone.embed_target(x, t, context, clip_fea, backbone.weight_dtype, rope_freqs(grid, 0))
    vap_pass = None
    if references:
        vap_pass = ExpertPass(expert=expert, references=references, target_grid=grid, batch=b, timestep=t,
                              rope_freqs=rope_freqs, host=host, placement=placement,
                              rope_delta=None if rope_delta is None else int(rope_delta))
    for i, block in enumerate(backbone.blocks):
        if vap_pass is not None and i in expert.layers:
            target = vap_pass.layer(i, block, target)
        else:
            target = backbone.plain_layer(block, target, host)
    if vap_pass is not None:
        vap_pass.finish()
    return backbone.output(target, temb, grid, host)
