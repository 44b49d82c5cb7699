"""One model call with references: the part of VAP that both hosts (the standalone model and the
ComfyUI binding) share. The host runs its backbone as usual and hands each expert layer to the pass.

Temporal placement of the references (RoPE frame positions; the target sits at 0..F-1):
- sequential: the last reference just before the target, at -F_N..-1, the one before it before
  that, and so on: no two references share a temporal position;
- shared: every reference at -F_i..-1.
With one reference both are the paper's. `rope_delta` moves the reference nearest the target
(sequential) or every reference (shared) to start at -rope_delta instead.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .errors import InputError
from .vae_grid import VAE_STRIDE

PLACEMENTS = ("sequential", "shared")


def stack_rows(rows: list, fields: tuple[str, ...]):
    """Rows of embedded references (dataclasses of one kind) stacked into one batch along their tensor `fields`
    (a field may be None in every row); rows that are all one reference are shared (expanded), not copied."""
    first = rows[0]
    shared = all(r is first for r in rows)

    def stack(name):
        value = getattr(first, name)
        if value is None:
            return None
        if shared:
            return value.expand(len(rows), *value.shape[1:])
        return torch.cat([getattr(r, name) for r in rows])
    return dataclasses.replace(first, **{name: stack(name) for name in fields})


def reference_starts(frames: list[int], placement: str = "sequential", rope_delta: int | None = None) -> list[int]:
    """The first temporal RoPE position of each reference, given their latent frame counts."""
    if placement not in PLACEMENTS:
        raise InputError(f"placement {placement!r} is not one of {', '.join(PLACEMENTS)}.")
    if placement == "shared":
        return [-(f if rope_delta is None else rope_delta) for f in frames]
    start = -(frames[-1] if rope_delta is None else rope_delta)
    starts = [start]
    for f in reversed(frames[:-1]):
        start -= f
        starts.insert(0, start)
    return starts


class ExpertPass:
    """Built per model call from the expert, the embedded references (each with the call's rows) and
    the placement options. It checks the references against the target once, owns their streams
    between layers, and runs each expert layer in order: a layer skipped, repeated or run out of
    order (another patch on the same blocks) is an error, never a silently shifted reference.
    What a stream is and what a layer computes belong to the expert's family (wan_layer, cog_layer)."""

    def __init__(self, *, expert, references: list, target_grid: tuple, batch: int, timestep, rope_freqs: Callable,
                 host, placement: str = "sequential", rope_delta: int | None = None):
        """references: the expert's embedded references; timestep: the target's, one per row (a family whose
        reference follows the target's time embeds it with it); rope_freqs(grid, t_start): the host's RoPE table."""
        if not references:
            raise InputError("an expert pass needs at least one reference.")
        self._check(references, target_grid, batch, expert)
        self.expert, self.host = expert, host
        starts = reference_starts([r.grid[0] for r in references], placement, rope_delta)
        self.streams = [expert.reference_stream(r, rope_freqs(r.grid, start), timestep)
                        for r, start in zip(references, starts)]
        self._next = 0

    @staticmethod
    def _check(references, target_grid, batch, expert):
        def pixels(grid):
            return f"{grid[2] * target_patch[1] * VAE_STRIDE}x{grid[1] * target_patch[0] * VAE_STRIDE}"
        target_patch = expert.cfg.spatial_patch
        for n, r in enumerate(references, 1):
            which = "the reference" if len(references) == 1 else f"reference {n}"
            if r.rows != batch:
                raise InputError(f"{which} was embedded for {r.rows} rows; the target has {batch}.")
            if tuple(r.grid[1:]) != tuple(target_grid[1:]):
                raise InputError(
                    f"{which} was encoded at {pixels(r.grid)} pixels but the video is {pixels(target_grid)}: encode "
                    "it at the video's width and height (in ComfyUI: feed VAP Encode Reference the positive/negative "
                    "of the node whose latent the sampler uses).")
            if expert.same_length and r.grid[0] != target_grid[0]:
                raise InputError(
                    f"{which} has {r.grid[0]} latent frames but the video has {target_grid[0]}: this expert takes a "
                    "reference exactly as long as the video (the paper resamples it evenly to the video's frame "
                    "count): resample the reference to the video's frame count.")

    def layer(self, index: int, block, target):
        """Run backbone layer `index` (the host's block) jointly with its expert block; the target stream, updated."""
        layers = self.expert.layers
        expected = layers[self._next] if self._next < len(layers) else None
        if index != expected:
            due = f"layer {expected} was due" if expected is not None else "every expert layer had run"
            raise InputError(
                f"VAP expert layer {index} ran when {due} (expert layers {list(layers)}): another "
                "patch skips, repeats or reorders the model's blocks, which would put the reference out of step. "
                "Skip Layer Guidance and the like work on the other layers: choose layers without an expert block.")
        missing = self.expert.missing_block_attributes(block) if self._next == 0 else []
        if missing:
            raise InputError(f"this host's transformer block lacks {', '.join(missing)}, which the VAP joint layer "
                             "reads: the pack does not support this version of the model.")
        self._next += 1
        target, self.streams = self.expert.joint_layer(index, block, target, self.streams, self.host)
        return target

    @property
    def started(self) -> bool:
        """Whether an expert layer has run in this call."""
        return self._next > 0

    def finish(self):
        """After the model call: every expert layer must have run."""
        if self._next != len(self.expert.layers):
            missing = list(self.expert.layers[self._next:])
            raise InputError(f"VAP expert layers {missing} never ran: another patch skips the model's blocks, so the "
                             "reference was left out. Choose layers without an expert block for it (expert layers: "
                             f"{list(self.expert.layers)}).")
