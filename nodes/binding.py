"""How the VAP expert runs inside ComfyUI's Wan model call.

VAPApplyExpert installs two wrappers on the MODEL's patcher (never anything large in
model_options, which is deep-copied on every clone):
- `StepWindow` (OUTER_SAMPLE) turns the start/end percent into sigmas with the sampling run's own
  model_sampling (after ModelSamplingSD3's shift) and leaves them in that run's transformer_options;
- `ExpertRunner` (DIFFUSION_MODEL) embeds the reference stream and replaces each expert layer with
  vap_core's joint layer, calling ComfyUI's own blocks, attention kernel, RoPE and casts.
The reference itself arrives per row in the conditioning's model_conds (see reference.py), so cond
rows carry the reference caption and uncond rows its negative, however ComfyUI batches them.
"""
from __future__ import annotations

import logging
import math

import torch

import comfy.ldm.modules.attention as comfy_attention
import comfy.model_management
from comfy.ldm.flux.math import apply_rope1

from ..vap_core.errors import InputError
from ..vap_core.host import Host
from ..vap_core.layer_step import embed_stream, joint_layer

KEY = "vap_expert"
REF_X, REF_CONTEXT, REF_CLIP = "vap_ref_x", "vap_ref_context", "vap_ref_clip_fea"
REF_TIMESTEP = 1.0  # the reference stream is clean: constant timestep 1 in the DiT's 0..1000 units
_WINDOW = "vap_sigma_window"


def _cast(param, dtype, device):
    return comfy.model_management.cast_to(param, dtype=dtype, device=device)


def comfy_host(transformer_options) -> Host:
    def attention(q, k, v, heads):
        return comfy_attention.optimized_attention(q, k, v, heads=heads, transformer_options=transformer_options)

    def backbone_cross_attn(block, x, context, context_img_len):
        return block.cross_attn(x, context, context_img_len=context_img_len, transformer_options=transformer_options)

    return Host(rope=apply_rope1, attention=attention, cast=_cast, backbone_cross_attn=backbone_cross_attn)


class StepWindow:
    """OUTER_SAMPLE wrapper: the expert runs for sigmas inside [start_percent, end_percent]."""

    def __init__(self, start_percent: float, end_percent: float):
        self.start_percent, self.end_percent = start_percent, end_percent

    def __call__(self, executor, *args, **kwargs):
        guider = executor.class_obj
        if self.start_percent >= self.end_percent:
            window = None  # empty: plain Wan for the whole run
        else:
            # open-ended at 0% and 100%: the first sigma can round to just above percent_to_sigma(0)
            sampling = guider.model_patcher.get_model_object("model_sampling")
            window = (math.inf if self.start_percent <= 0 else float(sampling.percent_to_sigma(self.start_percent)),
                      -math.inf if self.end_percent >= 1 else float(sampling.percent_to_sigma(self.end_percent)))
        guider.model_options["transformer_options"][_WINDOW] = window
        return executor(*args, **kwargs)


def _expert_active(transformer_options) -> bool:
    if _WINDOW not in transformer_options:
        return True  # called outside a sampler (e.g. apply_model directly): always on
    window, sigmas = transformer_options[_WINDOW], transformer_options.get("sigmas")
    if window is None:
        return False
    if sigmas is None:
        return True
    sigma = float(sigmas.flatten()[0])
    return window[1] <= sigma <= window[0]


class ExpertRunner:
    """DIFFUSION_MODEL wrapper around WanModel's forward. Holds the expert module (shared by every
    clone of the patcher, never copied); ComfyUI loads and offloads it as an additional model."""

    def __init__(self, expert, rope_delta: int | None):
        self.expert, self.rope_delta = expert, rope_delta
        self._warned = False

    def __call__(self, executor, x, timestep, context, clip_fea=None, time_dim_concat=None,
                 transformer_options={}, **kwargs):
        ref_x, ref_context, ref_clip = (kwargs.pop(k, None) for k in (REF_X, REF_CONTEXT, REF_CLIP))
        if ref_x is None or not _expert_active(transformer_options):
            if ref_x is None and not self._warned:
                self._warned = True
                logging.warning("VAP: this model has a VAP expert but the conditioning carries no reference "
                                "(connect VAPEncodeReference); sampling as plain Wan 2.1.")
            return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)

        wan = executor.class_obj
        _check_call(wan, x, clip_fea, ref_x, time_dim_concat)
        host = comfy_host(transformer_options)
        dtype = x.dtype
        ref_t = torch.full((ref_x.shape[0],), REF_TIMESTEP, device=x.device)
        ref, _, ref_e, ref_ctx = embed_stream(self.expert, ref_x, ref_t, ref_context, ref_clip, dtype)
        ref_frames = ref_x.shape[2] // wan.patch_size[0]
        delta = ref_frames if self.rope_delta is None else self.rope_delta
        ref_freqs = wan.rope_encode(ref_x.shape[2], ref_x.shape[3], ref_x.shape[4], t_start=-delta,
                                    device=x.device, dtype=dtype)
        stream = {"ref": ref}
        img_len, ref_img_len = clip_fea.shape[-2], ref_clip.shape[-2]

        def joint(i):
            block, expert_block = wan.blocks[i], self.expert.blocks[str(i)]

            def replacement(args, extra):
                e = args["vec"]
                if e.ndim == 4:  # (B, 1, 6, dim): one timestep per row
                    if e.shape[1] != 1:
                        raise InputError("VAP supports one timestep per video, not per frame.")
                    e = e[:, 0]
                out, stream["ref"] = joint_layer(block, expert_block, args["img"], stream["ref"], e, ref_e,
                                                 args["pe"], ref_freqs, args["txt"], ref_ctx, img_len, ref_img_len,
                                                 host)
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


def _chain(previous, replacement):
    """Keep another pack's replacement of the same layer: it wraps ours as its original block."""
    if previous is None:
        return replacement
    return lambda args, extra: previous(args, {**extra, "original_block": lambda a: replacement(a, extra)})


def _check_call(wan, x, clip_fea, ref_x, time_dim_concat):
    if clip_fea is None:
        raise InputError("VAP needs Wan 2.1 I2V's CLIP vision input: connect a CLIPVisionEncode of the start image "
                         "to WanImageToVideo's clip_vision_output.")
    if time_dim_concat is not None:
        raise InputError("VAP does not support time_dim_concat inputs (they come from another video node).")
    if ref_x.shape[3:] != x.shape[3:]:
        raise InputError(
            f"the reference was encoded at {ref_x.shape[4] * 8}x{ref_x.shape[3] * 8} pixels but the video is "
            f"{x.shape[4] * 8}x{x.shape[3] * 8}: set VAPEncodeReference's width and height to WanImageToVideo's.")
    if ref_x.shape[2] % wan.patch_size[0]:
        raise InputError(f"the reference has {ref_x.shape[2]} latent frames, not a multiple of the patch size.")
