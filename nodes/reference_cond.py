"""The references as the conditioning carries them, from VAP Encode Reference to the model call.

Each VAP Encode Reference adds one `EncodedReference` to the conditioning's rows; ComfyUI hands
the model call, per row, the tuple of that row's references (in order of encoding) through
model_conds: cond rows carry the reference captions and uncond rows their negatives, however
ComfyUI batches them. Since it holds no tensor, ComfyUI neither concatenates nor copies it to the
device at each step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import comfy.conds

COND_KEY = "vap_reference"


@dataclass(eq=False)  # compared and hashed by identity: one object per encoded reference
class EncodedReference:
    """One reference video, encoded, on the intermediate device: its 36-channel input
    (1, 36, F, H, W), its caption (1, n, 4096) and its first frame's CLIP tokens (1, 257, 1280)."""
    x: torch.Tensor
    context: torch.Tensor
    clip_fea: torch.Tensor


class ReferenceCond(comfy.conds.CONDRegular):
    """`cond` is a tuple with one entry per row: that row's tuple of EncodedReference, or None for
    rows meant to run without a reference (the reference guider's cond_noref). Rows batch together
    only when their references have the same count and sizes."""

    def process_cond(self, batch_size, **kwargs):
        return ReferenceCond(self.cond * batch_size)

    def can_concat(self, other):
        return isinstance(other, ReferenceCond) and _shapes(self.cond[0]) == _shapes(other.cond[0])

    def concat(self, others):
        return self.cond + tuple(row for other in others for row in other.cond)

    def size(self):
        return [len(self.cond)]


def _shapes(references):
    return None if references is None else tuple(r.x.shape for r in references)


def _with_references(conditioning, references):
    """The conditioning's rows, each carrying references(the tuple it carries now, or ())."""
    out = []
    for tokens, options in conditioning:
        model_conds = options.get("model_conds", {})
        previous = model_conds[COND_KEY].cond[0] if COND_KEY in model_conds else ()
        out.append([tokens, {**options, "model_conds": {**model_conds, COND_KEY: ReferenceCond((references(previous),))}}])
    return out


def add_reference(conditioning, reference: EncodedReference):
    """CONDITIONING rows that also carry `reference`, after the ones they carry already."""
    return _with_references(conditioning, lambda previous: previous + (reference,))


def without_reference(conditioning):
    """The conditioning's rows with the references taken out (marked, so the expert stays quiet)."""
    return _with_references(conditioning, lambda previous: None)
