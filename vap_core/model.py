"""The complete VAP transformer (frozen Wan 2.1 I2V backbone + expert) for plain-Python use and tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import WanI2V, load_wan_file
from .loading import load_strict
from .config import WanConfig
from .errors import InputError
from .expert import VAPExpert, expert_source, load_expert
from .host import TORCH_HOST
from .embedding import REFERENCE_TIMESTEP, embed_reference, embed_stream
from .expert_pass import ExpertPass
from .joint_layer import Stream, plain_layer
from .released import read_released
from .rope import rope_table


class VAPTransformer(nn.Module):
    def __init__(self, backbone: WanI2V, expert: VAPExpert | None, host=TORCH_HOST, where: str = "the expert"):
        super().__init__()
        if expert is not None:
            expert.check_fits(backbone.cfg, where)
        self.backbone = backbone
        self.expert = expert
        self.host = host

    @property
    def cfg(self) -> WanConfig:
        return self.backbone.cfg

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.blocks[0].self_attn.q.weight.dtype

    @classmethod
    def from_checkpoint(cls, path, dtype=torch.float32) -> "VAPTransformer":
        """Load the released checkpoint (diffusers layout: transformer/config.json + safetensors)."""
        rel = read_released(path)
        source = expert_source(rel)
        source.empty()  # checks the expert's layers before any tensor is read
        backbone = load_strict(WanI2V(rel.cfg, device="meta"), rel.tensors, rel.backbone_names, f"{path} (backbone)", dtype)
        expert = source.load(dtype)
        return cls(backbone, expert)

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

    def forward(self, x, t, context, clip_fea, ref_x=None, ref_context=None, ref_clip_fea=None,
                ref_t=REFERENCE_TIMESTEP, rope_delta=None, reference=None, placement="sequential"):
        """Target prediction (B, out_dim, F, H, W). Contexts are zero-padded to the text length
        (512) here if shorter. With no reference this is plain Wan 2.1 I2V. Several references: lists
        of ref_x / ref_context / ref_clip_fea (see expert_pass for `placement`). In a sampling loop,
        embed the references once (embed_reference) and pass them as `reference` at every step."""
        cfg, host, dtype = self.cfg, self.host, self.dtype
        b = self._check_target(x, context, clip_fea)
        t = _per_row("t", t, b, x.device)
        tokens, temb, e, ctx = embed_stream(self.backbone, x, t, self._pad(context), clip_fea, dtype)
        grid = tuple(s // p for s, p in zip(x.shape[2:], cfg.patch_size))

        def rope_freqs(g, t_start):
            return rope_table(cfg.head_dim, g, t_start, device=x.device)

        target = Stream(tokens, e, rope_freqs(grid, 0), ctx, clip_fea.shape[1])
        if ref_x is not None:
            reference = self.embed_reference(ref_x, ref_context, ref_clip_fea, b, ref_t)
        vap_pass = None
        if reference is not None:
            references = reference if isinstance(reference, list) else [reference]
            vap_pass = ExpertPass(self.expert, references, grid, b, rope_freqs, host, placement,
                                  None if rope_delta is None else int(rope_delta))

        for i, block in enumerate(self.backbone.blocks):
            if vap_pass is not None and i in self.expert.layers:
                target.tokens = vap_pass.layer(i, block, target)
            else:
                target.tokens = plain_layer(block, target, host)
        if vap_pass is not None:
            vap_pass.finish()
        return self.backbone.output(target.tokens, temb, grid, host)

    def embed_reference(self, ref_x, ref_context, ref_clip_fea, batch: int = 1, ref_t=REFERENCE_TIMESTEP):
        """The embedded reference(s) for a target batch of `batch` rows (each ref_x may have 1 row or
        `batch`): an EmbeddedReference, or a list of them when given lists."""
        if self.expert is None:
            raise InputError("a reference was given but this model has no expert: load it with from_checkpoint "
                             "or from_files(wan, expert).")
        several = isinstance(ref_x, (list, tuple))
        if not several:
            inputs = [(ref_x, ref_context, ref_clip_fea)]
        elif all(isinstance(v, (list, tuple)) and len(v) == len(ref_x) for v in (ref_context, ref_clip_fea)):
            inputs = list(zip(ref_x, ref_context, ref_clip_fea))
        else:
            raise InputError("several references need ref_x, ref_context and ref_clip_fea as lists of the same length.")
        embedded = []
        for one_x, one_context, one_clip in inputs:
            one_x, one_context, one_clip = self._check_reference(batch, one_x, one_context, one_clip)
            embedded.append(embed_reference(self.expert, one_x, self._pad(one_context), one_clip, self.dtype,
                                            _per_row("ref_t", ref_t, batch, one_x.device)))
        return embedded if several else embedded[0]

    def _pad(self, context):
        n = self.cfg.text_len - context.shape[1]
        return F.pad(context, (0, 0, 0, n)) if n > 0 else context

    def _check_target(self, x, context, clip_fea) -> int:
        cfg = self.cfg
        if x.ndim != 5 or x.shape[1] != cfg.in_dim:
            raise InputError(
                f"x has shape {tuple(x.shape)}; expected (batch, {cfg.in_dim}, frames, height, width): 16 noisy "
                "latent channels, 4 mask channels and 16 channels of the first-frame latent.")
        if any(s % p for s, p in zip(x.shape[2:], cfg.patch_size)):
            raise InputError(f"x's frames/height/width {tuple(x.shape[2:])} must be multiples of the patch size "
                             f"{cfg.patch_size}; resize the video (pixels to a multiple of 16).")
        b = x.shape[0]
        _check_tokens("context", context, b, cfg.text_dim, cfg.text_len)
        _check_tokens("clip_fea", clip_fea, b, cfg.image_dim)
        return b

    def _check_reference(self, b, ref_x, ref_context, ref_clip_fea):
        cfg = self.cfg
        if ref_context is None or ref_clip_fea is None:
            raise InputError("a reference needs ref_context (its caption) and ref_clip_fea (CLIP tokens of its "
                             "first frame) as well as ref_x.")
        if ref_x.ndim != 5 or ref_x.shape[1] != cfg.in_dim:
            raise InputError(f"ref_x has shape {tuple(ref_x.shape)}; expected (batch, {cfg.in_dim}, frames, "
                             "height, width), the same 36-channel layout as x.")
        if any(s % p for s, p in zip(ref_x.shape[2:], cfg.patch_size)):
            raise InputError(f"ref_x's frames/height/width {tuple(ref_x.shape[2:])} must be multiples of the patch "
                             f"size {cfg.patch_size}.")
        ref_x = _broadcast("ref_x", ref_x, b)
        ref_clip_fea = _broadcast("ref_clip_fea", ref_clip_fea, b)
        _check_tokens("ref_context", ref_context, b, cfg.text_dim, cfg.text_len)
        _check_tokens("ref_clip_fea", ref_clip_fea, b, cfg.image_dim)
        return ref_x, ref_context, ref_clip_fea


def _per_row(name, t, b, device):
    t = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() not in (1, b):
        raise InputError(f"{name} has {t.numel()} values; give one timestep, or one per row of x ({b}).")
    return t.expand(b)


def _broadcast(name, tensor, b):
    if tensor.shape[0] == 1 and b > 1:
        return tensor.expand(b, *tensor.shape[1:])
    if tensor.shape[0] != b:
        raise InputError(f"{name} has batch {tensor.shape[0]}; expected 1 or {b} (the batch of x).")
    return tensor


def _check_tokens(name, tensor, b, width, max_len=None):
    if tensor.ndim != 3 or tensor.shape[0] != b or tensor.shape[2] != width:
        raise InputError(f"{name} has shape {tuple(tensor.shape)}; expected ({b}, tokens, {width}).")
    if max_len is not None and tensor.shape[1] > max_len:
        raise InputError(f"{name} has {tensor.shape[1]} tokens; the model takes at most {max_len}.")
