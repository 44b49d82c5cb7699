"""ComfyUI's own context windows (Wan Context Windows, Context Windows (Manual)) with the expert.

From ComfyUI 0.33 each window is one model call on the window's latent frames, the start image's
conditioning cut to the same frames, and the whole conditioning otherwise, the references included
(they are no tensor ComfyUI could cut): every window is a paper-style VAP call. ComfyUI 0.3.64's
context windows do not cut Wan I2V's image conditioning, so sampling fails on a tensor size mismatch,
with or without the pack; there the pack refuses before sampling, saying what to do.
"""
from __future__ import annotations

import inspect

import comfy.context_windows

from ..vap_core.errors import InputError

KEY = "vap_context_windows"


def cut_image_conditioning() -> bool:
    """Whether this ComfyUI's context windows cut an I2V model's image conditioning to each window (they take a
    cond_retain_index_list for it since then)."""
    handler = getattr(comfy.context_windows, "IndexListContextHandler", None)
    return handler is not None and "cond_retain_index_list" in inspect.signature(handler.__init__).parameters


def refuse_context_windows(executor, noise, *args, **kwargs):
    """OUTER_SAMPLE wrapper, installed where cut_image_conditioning() is False: refuses a video longer than a
    window (one that fits in a window runs as one call, as without context windows)."""
    handler = executor.class_obj.model_options.get("context_handler")
    if handler is not None and noise.shape[handler.dim] > handler.context_length:
        raise InputError(
            "Context windows (Wan Context Windows) do not work for Wan 2.1 image-to-video on this ComfyUI: it does "
            "not cut the start image's conditioning to each window, so sampling fails (tensor sizes do not match), "
            "with or without VAP. Update to ComfyUI 0.33 or later for long videos, or remove the context windows "
            "node and make the video 81 frames or shorter.")
    return executor(noise, *args, **kwargs)
