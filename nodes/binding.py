"""How the VAP expert runs inside ComfyUI's Wan model call.

VAPApplyExpert installs one `VAPRunner` as two wrappers on the MODEL's patcher (never anything
large in model_options, which is deep-copied on every clone):
- OUTER_SAMPLE, once per sampling run: turns start/end percent into sigmas with the run's own
  model_sampling (after ModelSamplingSD3's shift) and opens the run's cache of embedded references,
  which goes away with the run;
- DIFFUSION_MODEL, every model call: takes the embedded reference rows from that cache (embedding
  each reference once per run, on the model's device and dtype) and replaces each expert layer with
  vap_core's joint layer, calling ComfyUI's own blocks, attention kernel, RoPE and casts.
The reference arrives per row through the conditioning's model_conds as a `ReferenceCond`: cond
rows carry the reference caption and uncond rows its negative, however ComfyUI batches them, and
since it holds no tensor ComfyUI neither concatenates nor copies it to the device at each step.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

import comfy.conds
import comfy.ldm.modules.attention as comfy_attention
import comfy.model_management
from comfy.ldm.flux.math import apply_rope1

from ..vap_core.errors import InputError
from ..vap_core.host import Host
from ..vap_core.layer_step import ReferenceStream, embed_reference, joint_layer

KEY = "vap_expert"
REFERENCE = "vap_reference"
REF_TIMESTEP = 1.0  # the reference stream is clean: constant timestep 1 in the DiT's 0..1000 units
_RUN = "vap_run"


@dataclass(eq=False)  # compared and hashed by identity: one object per conditioning
class Reference:
    """One reference as a conditioning carries it, on the intermediate device: its 36-channel
    input (1, 36, F, H, W), its caption (1, n, 4096) and its first frame's CLIP tokens (1, 257, 1280)."""
    x: torch.Tensor
    context: torch.Tensor
    clip_fea: torch.Tensor


class ReferenceRows(tuple):
    """The Reference of each row of a model call (a tuple, so ComfyUI passes it through untouched)."""


class ReferenceCond(comfy.conds.CONDRegular):
    """A conditioning's Reference; None marks rows that are meant to run without one (the reference
    guider's cond_noref), which are never batched with rows that have one."""

    def process_cond(self, batch_size, **kwargs):
        return ReferenceCond(ReferenceRows((self.cond,) * batch_size))

    def can_concat(self, other):
        return isinstance(other, ReferenceCond) and (self.cond[0] is None) == (other.cond[0] is None)

    def concat(self, others):
        return ReferenceRows(self.cond + tuple(row for other in others for row in other.cond))

    def size(self):
        return [len(self.cond)] if isinstance(self.cond, tuple) else [1]


def _cast(param, dtype, device):
    return comfy.model_management.cast_to(param, dtype=dtype, device=device)


def comfy_host(transformer_options) -> Host:
    def attention(q, k, v, heads):
        return comfy_attention.optimized_attention(q, k, v, heads=heads, transformer_options=transformer_options)

    def backbone_cross_attn(block, x, context, context_img_len):
        return block.cross_attn(x, context, context_img_len=context_img_len, transformer_options=transformer_options)

    return Host(rope=apply_rope1, attention=attention, cast=_cast, backbone_cross_attn=backbone_cross_attn)


@dataclass(eq=False)
class _Run:
    """One sampling run: the sigma window ((high, low), or None when empty) and the references
    embedded so far. Not a dict, so ComfyUI's per-call option copies share it."""
    window: tuple | None
    embedded: dict = field(default_factory=dict)


class VAPRunner:
    """Holds the expert module (shared by every clone of the patcher, never copied); ComfyUI loads
    and offloads it as an additional model of the MODEL."""

    def __init__(self, expert, rope_delta: int | None, start_percent: float, end_percent: float):
        self.expert, self.rope_delta = expert, rope_delta
        self.start_percent, self.end_percent = start_percent, end_percent
        self._warned = False

    def outer_sample(self, executor, *args, **kwargs):
        guider = executor.class_obj
        guider.model_options["transformer_options"][_RUN] = _Run(self._window(guider))
        return executor(*args, **kwargs)

    def _window(self, guider):
        if self.start_percent >= self.end_percent:
            return None  # empty: plain Wan for the whole run
        # open-ended at 0% and 100%: the first sigma can round to just above percent_to_sigma(0)
        sampling = guider.model_patcher.get_model_object("model_sampling")
        return (math.inf if self.start_percent <= 0 else float(sampling.percent_to_sigma(self.start_percent)),
                -math.inf if self.end_percent >= 1 else float(sampling.percent_to_sigma(self.end_percent)))

    def diffusion_model(self, executor, x, timestep, context, clip_fea=None, time_dim_concat=None,
                        transformer_options={}, **kwargs):
        rows = kwargs.pop(REFERENCE, None)
        run = transformer_options.get(_RUN)  # None when called outside a sampler: always on, no cache
        if rows is None or rows[0] is None or not _active(run, transformer_options.get("sigmas")):
            if rows is None and not self._warned:
                self._warned = True
                logging.warning("VAP: this model has a VAP expert but the conditioning carries no reference "
                                "(connect VAPEncodeReference); sampling as plain Wan 2.1.")
            return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)

        wan = executor.class_obj
        _check_call(x, clip_fea, time_dim_concat)
        reference = ReferenceStream.cat([self._embedded(r, run, x) for r in rows])
        if reference.grid[1:] != tuple(s // p for s, p in zip(x.shape[3:], wan.patch_size[1:])):
            raise InputError(
                f"the reference was encoded at {rows[0].x.shape[4] * 8}x{rows[0].x.shape[3] * 8} pixels but the video "
                f"is {x.shape[4] * 8}x{x.shape[3] * 8}: feed VAP Encode Reference the positive/negative of the "
                "WanImageToVideo whose latent the sampler uses.")
        delta = reference.grid[0] if self.rope_delta is None else self.rope_delta
        ref_freqs = wan.rope_encode(rows[0].x.shape[2], rows[0].x.shape[3], rows[0].x.shape[4], t_start=-delta,
                                    device=x.device, dtype=x.dtype)
        host = comfy_host(transformer_options)
        stream = {"ref": reference.tokens}
        img_len = clip_fea.shape[-2]

        def joint(i):
            block, expert_block = wan.blocks[i], self.expert.blocks[str(i)]

            def replacement(args, extra):
                e = args["vec"]
                if e.ndim == 4:  # (B, 1, 6, dim): one timestep per row
                    if e.shape[1] != 1:
                        raise InputError("VAP supports one timestep per video, not per frame.")
                    e = e[:, 0]
                out, stream["ref"] = joint_layer(block, expert_block, args["img"], stream["ref"], e, reference.e,
                                                 args["pe"], ref_freqs, args["txt"], reference.context, img_len,
                                                 reference.context_img_len, host)
                return {"img": out}
            return replacement

        options = transformer_options.copy()
        patches = options.get("patches_replace", {}).copy()
        dit = patches.get("dit", {}).copy()
        for i in self.expert.layers:
            dit[("double_block", i)] = _chain(dit.get(("double_block", i)), joint(i))
        patches["dit"] = dit
        options["patches_replace"] = patches
        return executor(x, timestep, context, clip_fea, time_dim_concat, options, **kwargs)

    def _embedded(self, ref: Reference, run: _Run | None, x: torch.Tensor) -> ReferenceStream:
        """The reference embedded on x's device and dtype: once per sampling run."""
        key = (ref, x.device, x.dtype)
        if run is not None and key in run.embedded:
            return run.embedded[key]
        move = lambda t: t.to(device=x.device, dtype=x.dtype)  # noqa: E731
        t = torch.full((1,), REF_TIMESTEP, device=x.device)
        embedded = embed_reference(self.expert, move(ref.x), t, move(ref.context), move(ref.clip_fea), x.dtype)
        if run is not None:
            run.embedded[key] = embedded
        return embedded


def _active(run: _Run | None, sigmas) -> bool:
    if run is None or sigmas is None:
        return True
    if run.window is None:
        return False
    return run.window[1] <= float(sigmas.flatten()[0]) <= run.window[0]


def _chain(previous, replacement):
    """Keep another pack's replacement of the same layer: it wraps ours as its original block."""
    if previous is None:
        return replacement
    return lambda args, extra: previous(args, {**extra, "original_block": lambda a: replacement(a, extra)})


def _check_call(x, clip_fea, time_dim_concat):
    if clip_fea is None:
        raise InputError("VAP needs Wan 2.1 I2V's CLIP vision input: connect a CLIPVisionEncode of the start image "
                         "to WanImageToVideo's clip_vision_output.")
    if time_dim_concat is not None:
        raise InputError("VAP does not support time_dim_concat inputs (they come from another video node).")
