"""The shipped workflows, checked without ComfyUI: paper defaults, Comfy-Org file names, a
consistent graph, and the UI file holding the same graph as the API file."""
from __future__ import annotations

import json
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
API = json.loads((WORKFLOWS / "api" / "vap_wan21_i2v_480p.json").read_text())
UI = json.loads((WORKFLOWS / "Video-As-Prompt Wan2.1 I2V 480p.json").read_text())


def node(class_type: str) -> dict:
    (found,) = [n["inputs"] for n in API.values() if n["class_type"] == class_type]
    return found


def test_api_workflow_has_the_papers_defaults_and_comfy_org_files():
    assert node("UNETLoader")["unet_name"].startswith("wan2.1_i2v_480p_14B_")
    assert node("CLIPLoader")["clip_name"] == "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    assert node("CLIPVisionLoader")["clip_name"] == "clip_vision_h.safetensors"
    assert node("VAELoader")["vae_name"] == "wan_2.1_vae.safetensors"
    i2v = node("WanImageToVideo")
    assert (i2v["width"], i2v["height"], i2v["length"]) == (832, 480, 49)
    assert API[node("VAPEncodeReference")["positive"][0]]["class_type"] == "WanImageToVideo"  # the size comes from it
    assert node("VAPLoadReferenceVideo")["frames"] == 49 and node("VAPLoadReferenceVideo")["selection"] == "evenly"
    sampler = node("KSampler")
    assert (sampler["steps"], sampler["cfg"]) == (50, 5.0)
    assert node("ModelSamplingSD3")["shift"] == 3.0
    assert node("CreateVideo")["fps"] == 16.0
    assert node("VAPApplyExpert")["rope_delta"] == -1  # the reference's latent frame count


def test_api_links_point_at_existing_nodes_and_the_reference_reaches_the_sampler():
    for n in API.values():
        for value in n["inputs"].values():
            if isinstance(value, list):
                assert value[0] in API, value
    sampler = node("KSampler")
    assert API[sampler["positive"][0]]["class_type"] == "VAPEncodeReference"
    assert API[sampler["negative"][0]]["class_type"] == "VAPEncodeReference"
    assert API[API[sampler["model"][0]]["inputs"]["model"][0]]["class_type"] == "VAPApplyExpert"


def test_ui_workflow_holds_the_same_graph():
    graph_nodes = {n["id"]: n["type"] for n in UI["nodes"] if n["type"] not in ("Note", "MarkdownNote")}
    assert graph_nodes == {int(k): n["class_type"] for k, n in API.items()}
    ui_links = {(src, slot, dst) for _, src, slot, dst, _, _ in UI["links"]}
    api_links = {(int(v[0]), v[1], int(k)) for k, n in API.items() for v in n["inputs"].values() if isinstance(v, list)}
    assert ui_links == api_links
