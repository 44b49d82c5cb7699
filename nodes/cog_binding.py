"""How the VAP expert runs inside ComfyUI's CogVideoX model call (ComfyUI 0.33 and later).

ComfyUI's CogVideoX has no per-layer hook (Wan has `patches_replace`), and its own forward is not the
paper's CogVideoX-5B-I2V: detection turns RoPE off where the learned position table is present, its
RoPE grid is spaced by 1.875, and it adds zeros to the text tokens instead of the table's text rows.
So with the expert applied, the DIFFUSION_MODEL wrapper runs the whole call itself, with the reference
or without (outside the step window, or for a row that has none): vap_core's `run_call` over ComfyUI's
own modules, ops, casts and attention kernel. A run never switches between two backbones.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from ..vap_core.cog_modules import CogBackbone, CogReference
from ..vap_core.model import run_call
from ..vap_core.rope import apply_rope
from .binding import _RUN, VAPRunner, comfy_host
from .reference_cond import COND_KEY
from .schedule import in_window


class CogRunner(VAPRunner):
    """VAPRunner's sampling run and reference cache, with the model call of CogVideoX."""

    def diffusion_model(self, executor, x, timestep, context, ofs=None, transformer_options={}, **kwargs):
        rows = kwargs.pop(COND_KEY, None)
        run = transformer_options.get(_RUN)  # None when called outside a sampler: always on, no cache
        sigmas = transformer_options.get("sigmas")
        active = run is None or sigmas is None or in_window(run.window, float(sigmas.flatten()[0]))
        if rows is None and not self._warned:
            self._warned = True
            logging.warning("VAP: this model has a VAP expert but the conditioning carries no reference "
                            "(connect VAPEncodeReference); sampling as the paper's plain CogVideoX-I2V.")
        references = None
        if rows is not None and rows[0] is not None and active:
            references = [CogReference.cat([self._embedded(row[j], run, x) for row in rows]) for j in range(len(rows[0]))]
        cog = executor.class_obj
        backbone = CogBackbone(cog, self.module.cfg, cog.patch_embed.max_text_seq_length, dtype=x.dtype)
        host = replace(comfy_host(transformer_options), rope=apply_rope)
        return run_call(backbone, self.module, host, x, timestep, context, None, references,
                        placement=self.placement, rope_delta=self.rope_delta)
