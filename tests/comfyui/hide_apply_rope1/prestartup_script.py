"""Test-only: just before ComfyUI runs the pack's __init__.py, delete comfy.ldm.flux.math.apply_rope1
(the symbol ComfyUI 0.3.60 added), as in a ComfyUI older than the pack's floor.

ComfyUI runs every prestartup script before it loads any custom node, in whatever order the folder
lists them; an audit hook on `exec` fires when the pack's module code starts, whatever the order.
ComfyUI's own modules have bound apply_rope1 by then and keep working."""
import os
import sys

PACK_INIT = os.path.join("ComfyUI-Video-As-Prompt", "__init__.py")


def _hide(event, args):
    if event == "exec" and getattr(args[0], "co_filename", "").endswith(PACK_INIT):
        import comfy.ldm.flux.math
        comfy.ldm.flux.math.__dict__.pop("apply_rope1", None)


sys.addaudithook(_hide)
