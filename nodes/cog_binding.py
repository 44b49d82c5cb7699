"""How the VAP expert runs inside ComfyUI's CogVideoX model call (ComfyUI 0.33 and later).

ComfyUI's CogVideoX has no per-layer hook (Wan has `patches_replace`), and its own forward is not the
paper's CogVideoX-5B-I2V: detection turns RoPE off where the learned position table is present, its
RoPE grid is spaced by 1.875, and it adds zeros to the text tokens instead of the table's text rows.
So with the expert applied, the DIFFUSION_MODEL wrapper runs the whole call itself, with the reference
or without (outside the step window, or for a row that has none): vap_core's `run_call` over ComfyUI's
own modules, ops, casts and attention kernel. A run never switches between two backbones.
"""
from __future__ import annotations

from dataclasses import replace

from ..vap_core.cog_modules import CogBackbone
from ..vap_core.model import run_call
from ..vap_core.rope import apply_rope
from .binding import VAPExpertWrapper, comfy_host
from .reference_cond import COND_KEY


class CogExpertWrapper(VAPExpertWrapper):
    """VAPExpertWrapper's sampling run, step window and reference cache, with CogVideoX's model call."""

    def diffusion_model(self, executor, x, timestep, context, ofs=None, transformer_options={}, **kwargs):
        call = kwargs.pop(COND_KEY, None)  # what apply_model left: None when the expert does not run in this call
        cog = executor.class_obj
        expert = self.module if call is None else call.expert
        backbone = CogBackbone(cog, expert.cfg, cog.patch_embed.max_text_seq_length, dtype=x.dtype)
        host = replace(comfy_host(transformer_options), rope=apply_rope)
        return run_call(backbone, expert, host, x, timestep, context, None, None if call is None else call.references,
                        placement=self.placement, rope_delta=self.rope_delta)
