"""How the VAP expert runs inside ComfyUI's Wan model call.

VAPApplyExpert installs one `VAPExpertWrapper` as three wrappers on the MODEL's patcher (never anything
large in model_options, which is deep-copied on every clone):
- OUTER_SAMPLE, once per sampling run: turns start/end percent into sigmas with the run's own
  model_sampling and opens the run's cache of embedded references, which goes away with the run;
- APPLY_MODEL, every model call, outside the diffusion model: whether the expert runs at this sigma,
  and each row's references from the conditioning (see reference_cond.py), embedded once per run on
  the model's device and dtype. Nothing of this is in the diffusion model, so TorchCompileModel
  compiles it once: no graph break on the sigma, no guard on the cache;
- DIFFUSION_MODEL, every model call: hands every expert layer to vap_core's ExpertPass, with
  ComfyUI's own blocks, attention kernel, RoPE and casts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

import comfy.ldm.modules.attention as comfy_attention
import comfy.model_management
import comfy.model_patcher
from comfy.ldm.flux.math import apply_rope1

from ..vap_core.errors import InputError
from ..vap_core.expert_pass import ExpertPass
from ..vap_core.host import Host
from ..vap_core.wan_layer import Stream
from .expert_patcher import follow_model_device
from .reference_cond import COND_KEY, EncodedReference
from .schedule import in_window, sigma_window

KEY = "vap_expert"
_RUN = "vap_run"


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
    """One sampling run: the sigma window (None when empty) and the references embedded so far.
    Not a dict, so ComfyUI's per-call option copies share it."""
    window: tuple | None
    embedded: dict = field(default_factory=dict)


class VAPExpertWrapper:
    """Shared by every clone of the patcher. Each call uses the expert of the patcher that runs it (an additional
    model of the MODEL, which ComfyUI loads and offloads with it); `module`, the one Apply VAP Expert got, serves
    calls outside a sampler."""

    def __init__(self, module, *, rope_delta: int | None, placement: str, start_percent: float, end_percent: float):
        self.module, self.rope_delta, self.placement = module, rope_delta, placement
        self.start_percent, self.end_percent = start_percent, end_percent
        self._warned = self._warned_patches = False

    def outer_sample(self, executor, *args, **kwargs):
        guider = executor.class_obj
        follow_model_device(guider.model_patcher, KEY)  # before the sampler loads the models
        window = sigma_window(guider.model_patcher, self.start_percent, self.end_percent)
        # the run's cache lives in options of this run's own, restored after it (as core EasyCache does), so it
        # never outlives the run, whatever the guider does with its options
        original = guider.model_options
        guider.model_options = comfy.model_patcher.create_model_options_clone(original)
        guider.model_options["transformer_options"][_RUN] = _Run(window)
        try:
            return executor(*args, **kwargs)
        finally:
            guider.model_options = original

    def apply_model(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                    **kwargs):
        """Every model call, outside the diffusion model (which TorchCompileModel compiles): whether the expert
        runs at this sigma, and the call's references embedded (from the run's cache). The diffusion model then
        gets them as one argument, so its compiled code never reads a sigma or the cache."""
        rows = kwargs.get(COND_KEY)
        if rows is None:
            if not self._warned:
                self._warned = True
                logging.warning("VAP: this model has a VAP expert but the conditioning carries no reference "
                                "(connect VAPEncodeReference); sampling as the plain backbone.")
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        run = transformer_options.get(_RUN)  # None when called outside a sampler: always on, no cache
        sigmas = transformer_options.get("sigmas")
        active = run is None or sigmas is None or in_window(run.window, float(sigmas.flatten()[0]))
        call = None
        if rows[0] is not None and active:
            self._warn_of_attention_patches(transformer_options)
            base = executor.class_obj
            expert, dtype = self._expert_of(base), _inference_dtype(base)
            embed = lambda ref: self._embedded(expert, ref, run, x.device, dtype)  # noqa: E731
            call = _ExpertCall(expert, [_cat([embed(row[j]) for row in rows]) for j in range(len(rows[0]))])
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **{**kwargs, COND_KEY: call})

    def diffusion_model(self, executor, x, timestep, context, clip_fea=None, time_dim_concat=None,
                        transformer_options={}, **kwargs):
        call = kwargs.pop(COND_KEY, None)  # what apply_model left: None when the expert does not run in this call
        if call is None:
            return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)
        references = call.references
        wan = executor.class_obj
        _check_call(x, clip_fea, time_dim_concat)
        pt, ph, pw = wan.patch_size
        grid = tuple(-(-s // p) for s, p in zip(x.shape[2:], wan.patch_size))  # ComfyUI pads to the patch size

        rope_options = transformer_options.get("rope_options")

        def rope_freqs(g, t_start):
            if rope_options is None:  # (ComfyUI 0.3.64's rope_encode takes no transformer_options)
                return wan.rope_encode(g[0] * pt, g[1] * ph, g[2] * pw, t_start=t_start, device=x.device, dtype=x.dtype)
            # a RoPE patch (ScaleROPE: shift_t, scale_t, ...) moves and spaces the target's positions; the reference
            # moves with it, its frames just before the target's first one at the target's spacing
            return wan.rope_encode(g[0] * pt, g[1] * ph, g[2] * pw, t_start=t_start * rope_options.get("scale_t", 1.0),
                                   device=x.device, dtype=x.dtype, transformer_options=transformer_options)

        vap_pass = ExpertPass(expert=call.expert, references=references, target_grid=grid, batch=x.shape[0],
                              timestep=timestep, rope_freqs=rope_freqs, host=comfy_host(transformer_options),
                              placement=self.placement, rope_delta=self.rope_delta)
        img_len = clip_fea.shape[-2]

        def joint(i):
            block = wan.blocks[i]

            def replacement(args, extra):
                e = args["vec"]
                if e.ndim == 4:  # (B, 1, 6, dim): one timestep per row
                    if e.shape[1] != 1:
                        raise InputError("VAP supports one timestep per video, not per frame.")
                    e = e[:, 0]
                return {"img": vap_pass.layer(i, block, Stream(args["img"], e, args["pe"], args["txt"], img_len)).tokens}
            return replacement

        blocks_ran = []  # a cache (EasyCache) inside this wrapper may answer a call without running any block

        def marked(args, extra):
            blocks_ran.append(True)
            return extra["original_block"](args)

        options = transformer_options.copy()
        patches = options.get("patches_replace", {}).copy()
        dit = patches.get("dit", {}).copy()
        for i in call.expert.layers:
            dit[("double_block", i)] = _chain(dit.get(("double_block", i)), joint(i))
        plain = [i for i in range(len(wan.blocks)) if i not in call.expert.layers]
        if plain:  # the first layer without an expert block tells whether the model's blocks ran at all
            dit[("double_block", plain[0])] = _chain(dit.get(("double_block", plain[0])), marked)
        patches["dit"] = dit
        options["patches_replace"] = patches
        out = executor(x, timestep, context, clip_fea, time_dim_concat, options, **kwargs)
        if vap_pass.started or blocks_ran:  # else a cached answer: no layer of the model ran, none was skipped
            vap_pass.finish()
        return out

    def _warn_of_attention_patches(self, transformer_options):
        """Another node's attention patches (attn1_patch, attn2_patch: ComfyUI 0.33's Wan blocks call them) do not
        reach the expert layers, whose joint attention is the pack's own: said once per model."""
        patched = [kind for kind in ("attn1_patch", "attn2_patch") if transformer_options.get("patches", {}).get(kind)]
        if patched and not self._warned_patches:
            self._warned_patches = True
            logging.warning(f"VAP: another node patches this model's attention ({', '.join(patched)}); the patches run "
                            f"on the layers without an expert block only: the expert layers {list(self.module.layers)} "
                            "run the reference's joint attention, where they are skipped.")

    def _expert_of(self, base):
        """The expert of the patcher running this call: with ComfyUI's multi-GPU split, each device's thread calls
        its own clone of the model, whose additional models hold that device's copy of the expert."""
        patcher = getattr(base, "current_patcher", None)  # set while a sampler runs the patcher
        experts = patcher.get_additional_models_with_key(KEY) if patcher is not None else []
        return experts[0].model if experts else self.module

    @staticmethod
    def _embedded(expert, ref: EncodedReference, run: _Run | None, device, dtype):
        """The reference embedded by `expert` on the device and dtype of the diffusion model's input: once per
        sampling run."""
        key = (ref, expert, device, dtype)
        if run is not None and key in run.embedded:
            return run.embedded[key]
        move = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        embedded = expert.embed_reference(move(ref.x), move(ref.context), None if ref.clip_fea is None else move(ref.clip_fea),
                                          dtype)
        if run is not None:
            run.embedded[key] = embedded
        return embedded


def _cat(rows):
    """One reference's rows stacked into the call's batch (EmbeddedReference, or CogVideoX's CogReference)."""
    return type(rows[0]).cat(rows)


@dataclass(eq=False)
class _ExpertCall:
    """What one diffusion model call with the expert needs: the expert and the call's embedded references."""
    expert: torch.nn.Module
    references: list


def _inference_dtype(base) -> torch.dtype:
    """The dtype BaseModel._apply_model hands the diffusion model its input in."""
    if hasattr(base, "get_dtype_inference"):
        return base.get_dtype_inference()
    return base.manual_cast_dtype or base.get_dtype()  # ComfyUI 0.3.64


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
