"""The long-video template: stock Wan context windows over a video longer than 81 frames, every window
a paper-style VAP call with the whole reference (ComfyUI 0.33); on 0.3.64, whose context windows fail
for Wan I2V, a clear refusal (nodes/context_windows.py)."""
from __future__ import annotations

import json
import re

import av
import pytest

from devkit import comfy_server as harness
from vap_batch.workflow import DEFAULT_WORKFLOW

LONG_WORKFLOW = DEFAULT_WORKFLOW.with_name("vap_wan21_i2v_480p_long_video.json")
UI_FILE = DEFAULT_WORKFLOW.parents[1] / "Video-As-Prompt Wan2.1 I2V 480p - long video.json"
API = json.loads(LONG_WORKFLOW.read_text())


def node(class_type: str) -> dict:
    (found,) = [n["inputs"] for n in API.values() if n["class_type"] == class_type]
    return found


def test_long_template_windows_are_the_papers_length_and_the_reference_reaches_the_sampler():
    assert node("WanImageToVideo")["length"] >= 161
    windows = node("WanContextWindowsManual")
    # 49 frames (13 latent frames) like the paper's videos; 24 frames (6 latent frames) of overlap tile 161
    # frames (41 latent frames) in 5 windows starting 7 apart; the start image only in the window that holds it
    assert (windows["context_length"], windows["context_overlap"]) == (49, 24)
    assert (windows["context_schedule"], windows["fuse_method"]) == ("standard_static", "pyramid")
    assert windows["retain_first_frame"] is False
    assert node("VAPLoadReferenceVideo")["frames"] == 49
    sampler = node("KSampler")
    chain = []
    model = sampler["model"]
    while model:
        chain.append(API[model[0]]["class_type"])
        model = API[model[0]]["inputs"].get("model")
    assert chain == ["WanContextWindowsManual", "ModelSamplingSD3", "VAPApplyExpert", "UNETLoader"]
    assert API[sampler["positive"][0]]["class_type"] == "VAPEncodeReference"


def test_long_ui_workflow_holds_the_same_graph():
    ui = json.loads(UI_FILE.read_text())
    graph_nodes = {n["id"]: n["type"] for n in ui["nodes"] if n["type"] not in ("Note", "MarkdownNote")}
    assert graph_nodes == {int(k): n["class_type"] for k, n in API.items()}
    ui_links = {(src, slot, dst) for _, src, slot, dst, _, _ in ui["links"]}
    api_links = {(int(v[0]), v[1], int(k)) for k, n in API.items() for v in n["inputs"].values() if isinstance(v, list)}
    assert ui_links == api_links


def long_workflow(length: int, steps: int = 2, log: bool = True) -> dict:
    """The long template, tiny, with the 49-frame reference; with `log`, VAPTestExpertCallLog on the sampler's model."""
    graph = harness.tiny_workflow(steps=steps, length=length, workflow=LONG_WORKFLOW,
                                  changes={("VAPLoadReferenceVideo", "frames"): 49})
    if log:
        sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
        graph["990"] = {"class_type": "VAPTestExpertCallLog", "inputs": {"model": sampler["model"]}}
        sampler["model"] = ["990", 0]
    return graph


def calls_logged(text: str) -> list[dict]:
    return [json.loads(line) for line in re.findall(r"VAPTestExpertCallLog (\{.*\})", text)]


def frames_of(server, base, history) -> int:
    (item,) = harness.saved_files(history)
    with av.open(str(base / "output" / item["subfolder"] / item["filename"])) as video:
        return sum(1 for _ in video.decode(video=0))


@pytest.mark.floor
def test_the_expert_acts_in_every_window_and_the_video_has_the_asked_length(server, comfy):
    """161 frames are 41 latent frames: 5 windows of 13 (0-12, 7-19, ..., 28-40), each after the first with
    ComfyUI's anchor frame before it. In every model call of every window, each expert block runs once on the
    whole 49-frame reference (13 latent frames of 4x4 tokens at the tiny size); only the first window gets the
    start image, at its first frame. On ComfyUI 0.3.64, whose stock
    context windows fail for Wan I2V with or without the pack, the pack refuses before sampling, naming 0.33."""
    root, _, base = comfy
    steps = 2
    before = len(server.log_text())
    history = server.run(long_workflow(161, steps=steps))
    error = harness.execution_error(history)
    if harness.comfy_version(root) < (0, 33):
        assert error is not None and "ComfyUI 0.33" in error["exception_message"], error
        assert "Context windows" in error["exception_message"], error
        assert not calls_logged(server.log_text()[before:])  # refused before the first model call
        short = server.run(long_workflow(9, steps=1, log=False))  # fits in one window: runs as without windows
        assert harness.execution_error(short) is None, harness.execution_error(short)
        return
    assert error is None, error
    calls = calls_logged(server.log_text()[before:])
    windows = [[0, 12], [7, 19], [14, 26], [21, 33], [28, 40]]
    assert sorted({tuple(c["window"]) for c in calls}) == [tuple(w) for w in windows], calls
    reference_tokens = 13 * 4 * 4
    for call in calls:
        first = call["window"][0]
        assert call["anchor"] == (None if first == 0 else first - 1), call
        assert call["frames"] == 13 + (first > 0), call  # the target alone: the reference is the expert's
        assert call["expert_tokens"] == [reference_tokens, reference_tokens], call  # tiny expert: layers 0 and 2
        assert call["given"] == ([0] if first == 0 else []), call  # retain_first_frame off: the image in window 0
    rows = sum(c["rows"] for c in calls)
    assert rows == steps * len(windows) * 2, calls  # every window, every step, cond and uncond rows
    assert frames_of(server, base, history) == 161
