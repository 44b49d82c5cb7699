"""The shipped UI workflows in ComfyUI's real web frontend (headless Chromium driven by puppeteer-core,
tests/browser/check_workflow.mjs): opened as a user opens them, from the file and from the template
browser, then run from the UI with the tiny models. Skipped, with the reason, where Chromium, node or
`npm ci` in tools/browser is missing (CI installs them)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest

from devkit import comfy_server as harness
from devkit import tiny_names as tiny
from tests.helpers import screenshots_of, tiny_widgets
from tools import ui_workflow

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tests" / "browser" / "check_workflow.mjs"
# the user's own input files: their names in a shipped workflow are examples, in no list
USER_FILES = [["LoadImage", "image"], ["VAPLoadReferenceVideo", "video"]]
PACK_NODES = ("VAPCheckpointLoader", "VAPExpertLoader", "VAPApplyExpert", "VAPLoadReferenceVideo", "VAPEncodeReference",
              "VAPReferenceGuider")
SEARCHES = ["video as prompt", "VAP"]


def tiny_spec(path: Path) -> Path:
    path.write_text(json.dumps({"swap": harness.TINY_SWAP, "widgets": tiny_widgets(), "user_files": USER_FILES,
                                "searches": SEARCHES}))
    return path


def needs_033(path: Path) -> bool:
    """The CogVideoX template (native CogVideoX) and the long-video one (the context windows' widgets) need
    ComfyUI 0.33: every other shipped workflow is in the floor run."""
    return path == ui_workflow.COG_UI or "long video" in path.name


@pytest.mark.parametrize("ui_path", [pytest.param(p, id=p.stem, marks=() if needs_033(p) else pytest.mark.floor)
                                     for p in ui_workflow.UI_WORKFLOWS])
def test_shipped_workflow_opens_valid_and_runs_from_the_ui(frontend, ui_path, tmp_path, comfy):
    if needs_033(ui_path) and harness.comfy_version(comfy[0]) < (0, 33):
        pytest.skip("this template needs ComfyUI 0.33 or later")
    shots = screenshots_of(frontend)
    api_path = ui_workflow.UI_WORKFLOWS[ui_path]
    proc = subprocess.run(["node", str(CHECK), frontend.url, str(ui_path), str(api_path), str(tiny_spec(tmp_path / "tiny.json")),
                           str(shots)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step_errors"] == {}, result["step_errors"]

    for how in ("loaded", "template"):
        checks = result[how] if how == "loaded" else result["template"].get("loaded")
        assert checks is not None, f"not loaded through the template browser: {result['template']}"
        assert checks["missing_types"] == [], (how, checks["missing_types"])
        assert checks["broken_links"] == [], (how, checks["broken_links"])
        assert checks["mismatched_links"] == [], (how, checks["mismatched_links"])
        assert checks["bad_widgets"] == [], (how, checks["bad_widgets"])
        # what the frontend would queue is exactly the shipped API workflow
        assert checks["prompt_differences"] == [], (how, checks["prompt_differences"])

    loaded = result["loaded"]
    assert loaded["scale"] >= 0.6, "opens at a zoom where nodes draw their widgets"
    assert len(loaded["groups"]) >= 4 and all(g.startswith("Step") for g in loaded["groups"]), loaded["groups"]
    template = result["template"]
    assert template["module"] == "ComfyUI-Video-As-Prompt", template  # the pack's folder in custom_nodes
    assert template["thumbnail"]["status"] == 200 and template["thumbnail"]["type"] == "image/jpeg"
    assert template["card_found"], "the template card is in the template browser"

    names = {info["display_name"] for key, info in frontend.get("/object_info").items() if key in PACK_NODES}
    assert len(names) == len(PACK_NODES)
    for query in SEARCHES:  # the node library's search box finds every node of the pack
        assert names <= set(result["library"][query]), (query, result["library"][query])

    run = result["run"]
    assert run["queue_status"] == 200, run["queue_answer"]
    assert run["error"] is None, run["error"]
    assert "execution_success" in run["events"], run["events"]
    video = run["video"]
    assert video is not None, run["outputs"]
    assert video["readyState"] >= 2 and video["duration"] > 0, video
    path = frontend.base / "output" / video["file"]["subfolder"] / video["file"]["filename"]

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)
    assert result["page_errors"] == [], result["page_errors"]
