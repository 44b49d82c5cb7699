"""The shipped CogVideoX-5B I2V template: the paper's settings read from its files, and the API workflow run over
HTTP in a real ComfyUI 0.33 with the tiny CogVideoX models (devkit/tiny_models.py). Not in the floor run: ComfyUI
before 0.33 has no CogVideoX, and there the HTTP test is skipped saying so."""
from __future__ import annotations

import json

import av
import pytest
from safetensors.torch import load_file

from devkit import comfy_server as harness
from devkit import tiny_names as tiny
from tools.ui_workflow import COG_UI
from vap_batch.workflow import COG_WORKFLOW

API = json.loads(COG_WORKFLOW.read_text())
UI = json.loads(COG_UI.read_text())


def node(class_type: str) -> dict:
    (found,) = [n["inputs"] for n in API.values() if n["class_type"] == class_type]
    return found


def test_api_workflow_samples_as_the_papers_cogvideox_script():
    """infer/cog_vap.py: 720x480, 49 frames, the reference picked evenly, 50 steps, cfg 6 with use_dynamic_cfg,
    exported at 16 fps; T5 (CLIPLoader type cogvideox) and no CLIP vision."""
    assert node("CLIPLoader")["type"] == "cogvideox" and node("CLIPLoader")["clip_name"] == tiny.COG_TEXT_ENCODER
    assert node("VAELoader")["vae_name"] == tiny.COG_VAE
    assert node("VAPCheckpointLoader")["checkpoint"] == tiny.COG_CHECKPOINT
    assert not any(n["class_type"] in ("CLIPVisionLoader", "UNETLoader") for n in API.values())
    assert "clip_vision" not in node("VAPEncodeReference") and node("VAPEncodeReference")["fit"] == "stretch"
    i2v = node("VAPCogVideoXImageToVideo")
    assert (i2v["width"], i2v["height"], i2v["length"]) == (720, 480, 49)
    assert node("VAPLoadReferenceVideo")["frames"] == 49 and node("VAPLoadReferenceVideo")["selection"] == "evenly"
    guider = node("VAPReferenceGuider")
    assert (guider["cfg"], guider["dynamic_cfg"], guider["reference_cfg"]) == (6.0, True, 0.0)
    assert (node("BasicScheduler")["steps"], node("BasicScheduler")["scheduler"]) == (50, "simple")
    assert node("KSamplerSelect")["sampler_name"] == "dpmpp_2m_sde"
    assert node("CreateVideo")["fps"] == 16.0
    assert node("VAPApplyExpert")["rope_delta"] == -1


def test_api_links_reach_the_guider_and_the_ui_file_holds_the_same_graph():
    for n in API.values():
        for value in n["inputs"].values():
            if isinstance(value, list):
                assert value[0] in API, value
    guider = node("VAPReferenceGuider")
    assert API[guider["positive"][0]]["class_type"] == API[guider["negative"][0]]["class_type"] == "VAPEncodeReference"
    assert API[guider["model"][0]]["class_type"] == "VAPApplyExpert"
    assert API[node("VAPEncodeReference")["positive"][0]]["class_type"] == "VAPCogVideoXImageToVideo"
    graph_nodes = {n["id"]: n["type"] for n in UI["nodes"] if n["type"] not in ("Note", "MarkdownNote")}
    assert graph_nodes == {int(k): n["class_type"] for k, n in API.items()}
    ui_links = {(src, slot, dst) for _, src, slot, dst, _, _ in UI["links"]}
    api_links = {(int(v[0]), v[1], int(k)) for k, n in API.items() for v in n["inputs"].values() if isinstance(v, list)}
    assert ui_links == api_links
    models = {m["name"]: m["url"] for n in UI["nodes"] for m in n.get("properties", {}).get("models", [])}
    assert models[tiny.COG_VAE].endswith("THUDM/CogVideoX-5b-I2V/resolve/main/vae/diffusion_pytorch_model.safetensors")


def run_latent(server, base, graph: dict):
    """Run the graph, also saving SamplerCustomAdvanced's latent (exact numbers, unlike the video): (latent, history)."""
    sampler = next(k for k, n in graph.items() if n["class_type"] == "SamplerCustomAdvanced")
    graph["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": "latents/vap_cog"}}
    history = server.run(graph)
    assert harness.execution_error(history) is None, harness.execution_error(history)
    item = history["outputs"]["900"]["latents"][0]
    return load_file(str(base / "output" / item["subfolder"] / item["filename"]))["latent_tensor"], history


def test_cogvideox_template_runs_over_http_and_the_expert_and_dynamic_cfg_count(server, comfy):
    """The API template with the tiny CogVideoX (64x64, 9 frames): a 9-frame video; the expert's window and
    dynamic CFG each change the sampled latent."""
    root, _, base = comfy
    if harness.comfy_version(root) < (0, 33):
        pytest.skip("ComfyUI before 0.33 has no CogVideoX (the template needs 0.33 or later)")
    latent, history = run_latent(server, base, harness.tiny_workflow(steps=2, workflow=COG_WORKFLOW))
    assert tuple(latent.shape) == (1, 16, 3, tiny.SIZE // 8, tiny.SIZE // 8) and latent.isfinite().all()
    videos = [f for f in harness.saved_files(history) if f["filename"].endswith(".mp4")]
    assert len(videos) == 1
    with av.open(str(base / "output" / videos[0]["subfolder"] / videos[0]["filename"])) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == tiny.COG_LENGTH and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)
    no_expert, _ = run_latent(server, base, harness.tiny_workflow(
        steps=2, workflow=COG_WORKFLOW, changes={("VAPApplyExpert", "start_percent"): 1.0}))
    constant_cfg, _ = run_latent(server, base, harness.tiny_workflow(
        steps=2, workflow=COG_WORKFLOW, changes={("VAPReferenceGuider", "dynamic_cfg"): False}))
    assert (no_expert - latent).abs().max() > 1e-3
    assert (constant_cfg - latent).abs().max() > 1e-3
