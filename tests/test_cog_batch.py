"""The batch runner on the CogVideoX template (--workflow workflows/api/vap_cogvideox5b_i2v_480x720.json): its
columns land on that workflow's nodes, and a job list runs against a real ComfyUI 0.33 with the tiny models."""
from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest

from devkit import comfy_server as harness
from devkit import tiny_names as tiny
from vap_batch.contact_sheet import ContactSheet
from vap_batch.workflow import COG_WORKFLOW, job_graph, load_workflow


def test_the_columns_land_on_the_cogvideox_templates_nodes(tmp_path):
    """Seed and steps on its RandomNoise and BasicScheduler, cfg and reference_cfg on its guider, the expert
    on its checkpoint loader, frames on the image-to-video node and the reference loader; nothing added."""
    workflow = load_workflow(COG_WORKFLOW)
    graph = job_graph(workflow, {"seed": 7, "steps": 12, "cfg": 4.5, "reference_cfg": 1.5, "frames": 17,
                                 "expert": "mine/transformer/x.index.json", "output_prefix": "vap_batch/a"})
    assert sorted(graph) == sorted(workflow)
    assert graph["21"]["inputs"]["noise_seed"] == 7 and graph["23"]["inputs"]["steps"] == 12
    assert (graph["16"]["inputs"]["cfg"], graph["16"]["inputs"]["reference_cfg"]) == (4.5, 1.5)
    assert graph["16"]["inputs"]["dynamic_cfg"] is True
    assert graph["5"]["inputs"]["checkpoint"] == "mine/transformer/x.index.json"
    assert graph["13"]["inputs"]["length"] == graph["14"]["inputs"]["frames"] == 17
    assert graph["19"]["inputs"]["filename_prefix"] == "vap_batch/a"
    assert ContactSheet(tmp_path, [], "", workflow).default_seed == workflow["21"]["inputs"]["noise_seed"]


def test_batch_runs_the_cogvideox_template_against_the_server(server, comfy, tmp_path):
    """python -m vap_batch --workflow (the CogVideoX template at tiny sizes): two rows, two 9-frame videos,
    different where their seeds differ."""
    root, _, base = comfy
    if harness.comfy_version(root) < (0, 33):
        pytest.skip("ComfyUI before 0.33 has no CogVideoX (the template needs 0.33 or later)")
    media = harness.batch_media(base, tmp_path / "media")
    (media / "jobs.csv").write_text(
        "name,reference,target,reference_caption,target_caption,seed\n"
        "one,ref.mp4,target.png,a sneaker inflates and rises,a horse inflates and rises,1\n"
        "two,ref.mp4,target.png,a sneaker inflates and rises,a horse inflates and rises,2\n")
    workflow = tmp_path / "cog_workflow.json"
    workflow.write_text(json.dumps(harness.tiny_workflow(steps=2, workflow=COG_WORKFLOW)))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "vap_batch", str(media / "jobs.csv"), "--out", str(out),
                           "--server", server.url, "--workflow", str(workflow)],
                          capture_output=True, text=True, cwd=harness.ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 ok, 0 failed, 0 skipped" in proc.stdout
    videos = {}
    for name in ("one", "two"):
        with av.open(str(out / f"{name}.mp4")) as video:
            videos[name] = np.stack([f.to_ndarray(format="rgb24") for f in video.decode(video=0)]).astype(float)
        assert videos[name].shape == (tiny.COG_LENGTH, tiny.SIZE, tiny.SIZE, 3)
    assert np.abs(videos["one"] - videos["two"]).max() > 10  # the seed reached the RandomNoise
