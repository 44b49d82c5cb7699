"""CogVideoX-I2V-5B for VAP: the frozen backbone and the expert beside it, in ComfyUI 0.33's CogVideoX module
layout (comfy/ldm/cogvideo/model.py), from an injected `operations` namespace as layers.py does for Wan.

The learned position table is kept as released: (1, text_len + frames*height*width, dim), the text rows first.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .cog_config import CogConfig
from .cog_layer import (
    BLOCK_ATTRIBUTES,
    CogStream,
    cog_rope_table,
    joint_layer,
    layer_norm,
    plain_layer,
)
from .embedding import timestep_embedding
from .errors import IncompatibleExpertError, InputError, broadcast_rows, check_fit
from .expert_pass import stack_rows
from .vae_grid import VAE_STRIDE, video_frames
from .wan_layer import missing_attributes


class LayerNormZero(nn.Module):
    def __init__(self, cfg: CogConfig, ops=nn, **kw):
        super().__init__()
        self.linear = ops.Linear(cfg.time_dim, 6 * cfg.dim, **kw)
        self.norm = ops.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True, **kw)


class CogBlock(nn.Module):
    """One transformer layer: the backbone's, or the expert block that runs beside it."""

    def __init__(self, cfg: CogConfig, ops=nn, **kw):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.norm1 = LayerNormZero(cfg, ops, **kw)
        self.q, self.k, self.v = (ops.Linear(cfg.dim, cfg.dim, **kw) for _ in range(3))
        self.norm_q = ops.LayerNorm(cfg.head_dim, eps=1e-6, elementwise_affine=True, **kw)
        self.norm_k = ops.LayerNorm(cfg.head_dim, eps=1e-6, elementwise_affine=True, **kw)
        self.attn_out = ops.Linear(cfg.dim, cfg.dim, **kw)
        self.norm2 = LayerNormZero(cfg, ops, **kw)
        self.ff_proj = ops.Linear(cfg.dim, 4 * cfg.dim, **kw)
        self.ff_out = ops.Linear(4 * cfg.dim, cfg.dim, **kw)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: CogConfig, ops=nn, **kw):
        super().__init__()
        self.proj = ops.Conv2d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch, stride=cfg.patch, **kw)
        self.text_proj = ops.Linear(cfg.text_dim, cfg.dim, **kw)
        self.register_buffer("pos_embedding", torch.empty(1, cfg.table_rows, cfg.dim, **kw))


def time_embedding(m, dim: int, t, dtype):
    """A module's time embedding of t (B,): sinusoid of the model's width, then its two linears."""
    x = timestep_embedding(dim, t).to(dtype)
    return m.time_embedding_linear_2(F.silu(m.time_embedding_linear_1(x)))


def embed_tokens(m, x, context, dtype, video_row0: int):
    """(video tokens (B, F*H*W/4, dim), text tokens (B, n_text, dim)) of a module's patch embedding, each plus its
    rows of the learned table: the text rows from row 0, the video rows from `video_row0` (the released table's text
    length; 226 in ComfyUI's allocation)."""
    b, frames = x.shape[0], x.shape[2]
    proj, text_proj = m.patch_embed.proj, m.patch_embed.text_proj
    video = proj(rearrange(x.to(_own_dtype(proj, dtype)), "b c f h w -> (b f) c h w")).to(dtype)
    video = rearrange(video, "(b f) d h w -> b (f h w) d", b=b, f=frames)
    text = text_proj(context.to(_own_dtype(text_proj, dtype))).to(dtype)
    table = m.patch_embed.pos_embedding.to(device=x.device, dtype=dtype)
    return video + table[:, video_row0:video_row0 + video.shape[1]], text + table[:, :text.shape[1]]


def _own_dtype(layer, dtype):
    """ComfyUI keeps CogVideoX's patch embedding in float32 and runs it so; fp8 weights run in the call's dtype."""
    return layer.weight.dtype if layer.weight.dtype.itemsize > 1 else dtype


def check_input(cfg, name, x, context, batch=None):
    """Shape checks of a stream's latent and text, with what to do."""
    if x.ndim != 5 or x.shape[1] != cfg.in_dim:
        raise InputError(f"{name} has shape {tuple(x.shape)}; expected (batch, {cfg.in_dim}, frames, height, width): "
                         "16 latent channels, then 16 of the image condition (the first frame's latent in frame 0, "
                         "zeros after it).")
    if tuple(x.shape[2:]) != (cfg.grid[0], cfg.sample_height, cfg.sample_width):
        f, h, w = cfg.grid[0], cfg.sample_height, cfg.sample_width
        raise InputError(
            f"{name} is {x.shape[2]} latent frames of {x.shape[4]}x{x.shape[3]}; this CogVideoX model's learned "
            f"position table fits only {f} latent frames of {w}x{h} ({video_frames(f)} frames at "
            f"{w * VAE_STRIDE}x{h * VAE_STRIDE} pixels): make the video that size.")
    b = batch or x.shape[0]
    what = "its caption" if name != "x" else "the prompt"
    if context.ndim != 3 or context.shape[0] != b or context.shape[2] != cfg.text_dim:
        raise InputError(f"{name}'s text has shape {tuple(context.shape)}; expected ({b}, {cfg.text_len}, "
                         f"{cfg.text_dim}): T5 embeddings of {what}.")
    if context.shape[1] != cfg.text_len:
        raise InputError(f"{name}'s text has {context.shape[1]} tokens; CogVideoX takes exactly {cfg.text_len} "
                         "(T5 padded to that length, nothing masked), the text rows of its position table: encode "
                         "the text with CogVideoX's T5 settings.")


class CogEmbedders(nn.Module):
    """Patch, text and time embedders with a learned position table: what both the backbone and the expert have."""

    def __init__(self, cfg: CogConfig, ops=nn, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg, ops, **kw)
        self.time_embedding_linear_1 = ops.Linear(cfg.dim, cfg.time_dim, **kw)
        self.time_embedding_linear_2 = ops.Linear(cfg.time_dim, cfg.time_dim, **kw)

    def time_embedding(self, t, dtype):
        return time_embedding(self, self.cfg.dim, t, dtype)


class CogVideoXI2V(CogEmbedders):
    """The plain CogVideoX-I2V transformer (the frozen backbone)."""

    def __init__(self, cfg: CogConfig, ops=nn, device=None, dtype=None):
        super().__init__(cfg, ops, device, dtype)
        kw = {"device": device, "dtype": dtype}
        self.blocks = nn.ModuleList(CogBlock(cfg, ops, **kw) for _ in range(cfg.num_layers))
        self.norm_final = ops.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True, **kw)
        self.norm_out = nn.Module()
        self.norm_out.linear = ops.Linear(cfg.time_dim, 2 * cfg.dim, **kw)
        self.norm_out.norm = ops.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True, **kw)
        self.proj_out = ops.Linear(cfg.dim, cfg.patch * cfg.patch * cfg.out_dim, **kw)

    def caller(self) -> "CogBackbone":
        return CogBackbone(self, self.cfg, self.cfg.text_len)


class CogBackbone:
    """The backbone's side of a model call (what model.run_call asks of a backbone), over any module in ComfyUI's
    CogVideoX layout: vap_core's own, or ComfyUI's, whose table has its video rows from row 226."""

    def __init__(self, module, cfg: CogConfig, video_row0: int, dtype: torch.dtype | None = None):
        """dtype: the call's compute dtype (default: the blocks' weight dtype)."""
        self.module, self.cfg, self.video_row0, self.dtype = module, cfg, video_row0, dtype
        self.blocks = module.blocks

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.dtype or self.module.blocks[0].q.weight.dtype

    def check_target(self, x, context, clip_fea) -> int:
        if clip_fea is not None:
            raise InputError("CogVideoX-I2V takes no CLIP image input (clip_fea): the start image reaches it through "
                             "the image condition channels of x.")
        check_input(self.cfg, "x", x, context)
        return x.shape[0]

    def check_reference(self, batch, ref_x, ref_context, ref_clip_fea):
        if ref_context is None:
            raise InputError("a reference needs ref_context (its caption's T5 embeddings) as well as ref_x.")
        if ref_clip_fea is not None:
            raise InputError("CogVideoX-I2V takes no CLIP image input: leave ref_clip_fea out.")
        frames = self.cfg.grid[0]  # the target's: it passed check_target
        if ref_x.ndim == 5 and ref_x.shape[2] != frames:
            raise InputError(
                f"ref_x has {ref_x.shape[2]} latent frames but the video has {frames}: CogVideoX's VAP takes a reference "
                "exactly as long as the video (the paper resamples it evenly to the video's frame count): resample "
                f"the reference to {video_frames(frames)} frames before encoding it.")
        check_input(self.cfg, "ref_x", ref_x, ref_context, batch)
        return broadcast_rows("ref_x", ref_x, batch), ref_context, None

    def token_grid(self, x) -> tuple:
        return x.shape[2], x.shape[3] // self.cfg.patch, x.shape[4] // self.cfg.patch

    def rope(self, grid, t_start, device):
        return cog_rope_table(self.cfg.head_dim, grid, t_start, device=device)

    def embed_target(self, x, t, context, clip_fea, dtype, freqs):
        video, text = embed_tokens(self.module, x, context, dtype, self.video_row0)
        emb = time_embedding(self.module, self.cfg.dim, t, dtype)
        return CogStream(video, text, emb, freqs), emb

    plain_layer = staticmethod(plain_layer)

    def output(self, target: CogStream, emb, grid, host):
        """Final norms, projection and unpatchify: the target's video tokens -> (B, out_dim, F, H, W)."""
        m = self.module
        x = layer_norm(m.norm_final, target.video, host)
        shift, scale = m.norm_out.linear(F.silu(emb)).unsqueeze(1).chunk(2, dim=2)
        x = m.proj_out(layer_norm(m.norm_out.norm, x, host) * (1 + scale) + shift)
        f, h, w = grid
        p = self.cfg.patch
        return rearrange(x, "b (f h w) (c ph pw) -> b c f (h ph) (w pw)", f=f, h=h, w=w, ph=p, pw=p)


@dataclass
class CogReference:
    """One reference as it enters the first expert layer: its tokens, and its timestep where it has its own
    (None: the target's, as the paper's pipeline gives it). A sampling loop embeds it once."""
    video: torch.Tensor
    text: torch.Tensor
    grid: tuple
    ref_t: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return self.video.shape[0]

    @staticmethod
    def cat(rows: list["CogReference"]) -> "CogReference":
        return stack_rows(rows, ("video", "text", "ref_t"))


class CogExpert(CogEmbedders):
    """The VAP expert of CogVideoX: its own embedders and table, and an expert block beside some backbone layers."""
    same_length = True  # the reference has as many latent frames as the target (the paper resamples it to that)

    def __init__(self, cfg: CogConfig, layers, ops=nn, device=None, dtype=None):
        super().__init__(cfg, ops, device, dtype)
        self.layers = tuple(sorted(int(i) for i in layers))
        self.blocks = nn.ModuleDict({str(i): CogBlock(cfg, ops, device=device, dtype=dtype) for i in self.layers})

    def check_fits(self, backbone, where: str = "the expert"):
        """Raise IncompatibleExpertError unless this expert can run beside `backbone` (a config)."""
        if backbone.family != "cog":
            raise IncompatibleExpertError(
                f"{where} is a CogVideoX-I2V-5B expert but the backbone is Wan 2.1: load CogVideoX-5B-I2V for it, "
                "or the Wan 2.1 expert for this backbone.")
        cfg = self.cfg
        check_fit(where, (
            ("width", cfg.dim, backbone.dim), ("heads", cfg.num_heads, backbone.num_heads),
            ("text width", cfg.text_dim, backbone.text_dim), ("time width", cfg.time_dim, backbone.time_dim),
            ("input channels", cfg.in_dim, backbone.in_dim), ("patch size", cfg.patch, backbone.patch),
            ("position table", cfg.table_rows, backbone.table_rows),
            ("depth trained with", cfg.num_layers, backbone.num_layers)), self.layers, backbone.num_layers,
            "VAP's released CogVideoX expert pairs with CogVideoX-5B-I2V: load that backbone, or the expert trained "
            "for yours.")

    def embed_reference(self, ref_x, ref_context, ref_clip_fea, dtype, ref_t=None) -> CogReference:
        video, text = embed_tokens(self, ref_x, ref_context, dtype, self.cfg.text_len)
        grid = ref_x.shape[2], ref_x.shape[3] // self.cfg.patch, ref_x.shape[4] // self.cfg.patch
        return CogReference(video, text, grid, ref_t)

    def reference_stream(self, ref: CogReference, freqs, t) -> CogStream:
        return CogStream(ref.video, ref.text, self.time_embedding(t if ref.ref_t is None else ref.ref_t,
                                                                  ref.video.dtype), freqs)

    def joint_layer(self, index, block, target, references, host):
        return joint_layer(block, self.blocks[str(index)], target, references, host)

    @staticmethod
    def missing_block_attributes(block) -> list[str]:
        return missing_attributes(block, BLOCK_ATTRIBUTES)
