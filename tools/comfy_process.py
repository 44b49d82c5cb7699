"""Start ComfyUI inside this Python process (CPU, an isolated --base-directory) with the pack and
the test-only loaders installed. Used by the scripts that run with ComfyUI's own Python (python -m, from the pack folder)."""
from __future__ import annotations

import asyncio
import sys


def start(comfy_root: str, base: str, cpu: bool = True, reserve_vram: float | None = None):
    """reserve_vram: ComfyUI's --reserve-vram, in GB."""
    sys.path.insert(0, comfy_root)  # ComfyUI's own modules first (the pack folder also has a nodes/)
    from comfy.cli_args import args
    args.cpu = cpu
    args.reserve_vram = reserve_vram
    args.base_directory = base  # read when folder_paths is imported, below
    import utils.install_util  # noqa: F401  (ComfyUI's utils package before comfy/utils.py shadows it)
    import nodes
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    missing = [n for n in ("VAPExpertLoader", "VAPApplyExpert", "VAPEncodeReference", "VAPTestTextEncoderLoader")
               if n not in nodes.NODE_CLASS_MAPPINGS]
    if missing:
        raise RuntimeError(f"nodes not registered: {missing}; see the import errors above")
    return nodes


def node_classes() -> dict:
    """ComfyUI's NODE_CLASS_MAPPINGS (after start())."""
    return sys.modules["nodes"].NODE_CLASS_MAPPINGS
