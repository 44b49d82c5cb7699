"""Rebuilds the shipped UI workflows (what the ComfyUI web frontend opens) from the API ones with
ComfyUI's own frontend in headless Chromium, laid out by tools/workflow_layouts/, plus each one's
template-browser thumbnail:

    python tests/comfyui/ui_workflow.py

Needs a ComfyUI (see harness.find_comfyui), /usr/bin/chromium and `npm ci` in tools/browser."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import harness

BROWSER_TOOLS = harness.ROOT / "tools" / "browser"
# UI workflow (its name is the template browser's title) -> the API workflow it is built from
UI_WORKFLOWS = {
    harness.ROOT / "workflows" / "Video-As-Prompt Wan2.1 I2V 480p.json": harness.API_WORKFLOW,
    harness.ROOT / "workflows" / "Video-As-Prompt Wan2.1 I2V 480p - reference guidance.json":
        harness.API_WORKFLOW.with_name("vap_wan21_i2v_480p_reference_guidance.json"),
    harness.ROOT / "workflows" / "Video-As-Prompt Wan2.1 I2V 480p - two references.json":
        harness.API_WORKFLOW.with_name("vap_wan21_i2v_480p_two_references.json"),
}


def layout_of(api: Path) -> Path:
    return harness.ROOT / "tools" / "workflow_layouts" / api.name


def main() -> int:
    root, why = harness.find_comfyui()
    python, why2 = harness.comfy_python(root) if root else (None, why)
    if python is None:
        print(why2, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        harness.prepare_base(Path(tmp), python, root)
        server = harness.Server(root, python, Path(tmp))
        try:
            for ui, api in UI_WORKFLOWS.items():
                subprocess.run(["node", str(BROWSER_TOOLS / "build_ui_workflow.mjs"), server.url, str(api),
                                str(layout_of(api)), str(ui), str(ui.with_suffix(".jpg"))], check=True)
                print(f"wrote {ui} and its thumbnail")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
