"""Rebuilds the shipped UI workflows (what the ComfyUI web frontend opens) from the API ones with
ComfyUI's own frontend in headless Chromium, laid out by tools/workflow_layouts/, plus each one's
template-browser thumbnail, and the subgraph blueprint (subgraphs/; needs a ComfyUI 0.33 or later):

    python -m tools.ui_workflow        (from the pack folder, in the pack's environment)

Needs a ComfyUI (see comfy_server.find_comfyui), /usr/bin/chromium and `npm ci` in tools/browser."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from devkit import comfy_server
from devkit.browser import BROWSER_TOOLS, browser_missing
from vap_batch.workflow import COG_WORKFLOW, DEFAULT_WORKFLOW, GUIDANCE_WORKFLOW, TWO_REFERENCES_WORKFLOW

# UI workflow (its name is the template browser's title) -> the API workflow it is built from
UI_WORKFLOWS = {
    comfy_server.ROOT / "workflows" / "Video-As-Prompt Wan2.1 I2V 480p.json": DEFAULT_WORKFLOW,
    comfy_server.ROOT / "workflows" / "Video-As-Prompt Wan2.1 I2V 480p - reference guidance.json": GUIDANCE_WORKFLOW,
    comfy_server.ROOT / "workflows" / "Video-As-Prompt Wan2.1 I2V 480p - two references.json": TWO_REFERENCES_WORKFLOW,
    comfy_server.ROOT / "workflows" / "Video-As-Prompt Wan2.1 I2V 480p - long video.json":
        DEFAULT_WORKFLOW.with_name("vap_wan21_i2v_480p_long_video.json"),
}
# needs ComfyUI 0.33 or later to run (its native CogVideoX); opens and builds on older ones too
COG_UI = comfy_server.ROOT / "workflows" / "Video-As-Prompt CogVideoX-5B I2V 480x720.json"
UI_WORKFLOWS[COG_UI] = COG_WORKFLOW

# the node library's ready-made node: the default workflow's VAP nodes as one subgraph, as the spec says
SUBGRAPH_SPEC = comfy_server.ROOT / "tools" / "workflow_layouts" / "subgraph_vap_wan21_i2v.json"
SUBGRAPH = comfy_server.ROOT / "subgraphs" / "Video-As-Prompt (Wan 2.1 I2V).json"
COG_SUBGRAPH_SPEC = comfy_server.ROOT / "tools" / "workflow_layouts" / "subgraph_vap_cogvideox5b_i2v.json"
COG_SUBGRAPH = comfy_server.ROOT / "subgraphs" / "Video-As-Prompt (CogVideoX-5B I2V).json"
# blueprint -> (the API workflow its nodes come from, its spec)
SUBGRAPHS = {SUBGRAPH: (DEFAULT_WORKFLOW, SUBGRAPH_SPEC), COG_SUBGRAPH: (COG_WORKFLOW, COG_SUBGRAPH_SPEC)}


def layout_of(api: Path) -> Path:
    return comfy_server.ROOT / "tools" / "workflow_layouts" / api.name


def main() -> int:
    root, why = comfy_server.find_comfyui()
    python, why2 = comfy_server.comfy_python(root) if root else (None, why)
    why3 = why2 if python is None else browser_missing()
    if why3:
        print(why3, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        comfy_server.prepare_base(Path(tmp), python, root)
        server = comfy_server.Server(root, python, Path(tmp))
        try:
            for ui, api in UI_WORKFLOWS.items():
                subprocess.run(["node", str(BROWSER_TOOLS / "build_ui_workflow.mjs"), server.url, str(api),
                                str(layout_of(api)), str(ui), str(ui.with_suffix(".jpg"))], check=True)
                print(f"wrote {ui} and its thumbnail")
            for blueprint, (api, spec) in SUBGRAPHS.items():
                if comfy_server.comfy_version(root) >= (0, 33):
                    subprocess.run(["node", str(BROWSER_TOOLS / "build_subgraph.mjs"), server.url, str(api),
                                    str(spec), str(blueprint)], check=True)
                    print(f"wrote {blueprint}")
                else:
                    print(f"kept {blueprint}: ComfyUI {root} has no pack subgraphs (0.33 and later have)")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
