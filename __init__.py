"""ComfyUI entry point of the Video-As-Prompt node pack.

Outside ComfyUI (tests, plain-Python use of vap_core) there is no ComfyUI to register with and the
pack registers nothing, so vap_core and the tests import anywhere. In a ComfyUI older than
COMFYUI_FLOOR it logs one line saying so and registers nothing, instead of failing on an import.
"""
from __future__ import annotations  # the check below must run on old Pythons too

import importlib.util
import logging

# The oldest ComfyUI with everything the pack uses: comfy.ldm.flux.math.apply_rope1 (and the
# transformer_options argument of Wan's cross-attention) arrived in 0.3.60. pyproject.toml's
# [tool.comfy] requires-comfyui says the same (tests/test_package.py checks).
COMFYUI_FLOOR = "0.3.60"


def _missing() -> str | None:
    """The first thing the pack needs that this ComfyUI lacks, or None."""
    try:
        import comfy_api.latest  # noqa: F401  (the V3 node API)
    except ImportError:
        return "comfy_api.latest"
    import comfy.ldm.flux.math
    if not hasattr(comfy.ldm.flux.math, "apply_rope1"):
        return "comfy.ldm.flux.math.apply_rope1"
    return None


def _comfyui_version() -> str:
    try:
        from comfyui_version import __version__  # ComfyUI's root folder, on sys.path inside ComfyUI
    except ImportError:
        return "an older ComfyUI (it has no comfyui_version.py)"
    return __version__


if importlib.util.find_spec("folder_paths") is None:  # not inside ComfyUI: register nothing
    pass
elif (_lacking := _missing()) is not None:
    logging.error("ComfyUI-Video-As-Prompt needs ComfyUI >= %s; this is %s (it lacks %s). Update ComfyUI: "
                  "the pack registered no nodes.", COMFYUI_FLOOR, _comfyui_version(), _lacking)
    NODE_CLASS_MAPPINGS = {}  # loaded, with no nodes: ComfyUI then adds no "IMPORT FAILED" line of its own
else:
    from .nodes import comfy_entrypoint  # noqa: F401
