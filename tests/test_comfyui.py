"""Integration tests against a real ComfyUI with the real pack (skipped, with the reason, when no
ComfyUI is found; see devkit/comfy_server.py)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from devkit import comfy_server as harness
from devkit import tiny_names as tiny
from devkit.checkpoints import Case
from tests.helpers import edges, in_comfy, write_phone_clip
from vap_batch.workflow import GUIDANCE_WORKFLOW, TWO_REFERENCES_WORKFLOW

NODE_IDS = ("VAPCheckpointLoader", "VAPExpertLoader", "VAPApplyExpert", "VAPLoadReferenceVideo", "VAPEncodeReference",
            "VAPReferenceGuider", "VAPCogVideoXImageToVideo")


def with_latent_output(graph: dict) -> dict:
    """Also save the sampled latent (exact numbers, unlike the lossy video)."""
    sampler = next(k for k, n in graph.items() if n["class_type"] in ("KSampler", "SamplerCustomAdvanced"))
    graph["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": "latents/vap_test"}}
    return graph


def run_latent(server, base: Path, graph: dict):
    history = server.run(with_latent_output(graph))
    assert harness.execution_error(history) is None, harness.execution_error(history)
    item = history["outputs"]["900"]["latents"][0]
    return load_file(str(base / "output" / item["subfolder"] / item["filename"]))["latent_tensor"]


def golden(comfy, folder, *cases):
    """Run tests/comfyui/golden_in_comfy on a base directory of its own (it writes the cases' files under its
    models/): (exit status, {case file name: its JSON line}, stderr)."""
    root, python, base = comfy
    own = harness.sharing_base(base, folder, "custom_nodes")
    proc = harness.run_module(python, "tests.comfyui.golden_in_comfy", root, own, *map(str, cases),
                              capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"case"')]
    return proc.returncode, {line["case"]: line for line in lines}, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def public_golden(comfy, tmp_path_factory):
    return golden(comfy, tmp_path_factory.mktemp("golden_public"))


@pytest.mark.floor
def test_golden_equality_inside_comfyui(public_golden):
    returncode, lines, stderr = public_golden
    assert returncode == 0, stderr
    result = lines["case_comfy.safetensors"]
    print(result)
    assert result["dtype"] == "torch.float32" and result["expert_dtype"] == "torch.float32"
    for name in ("batched", "one_at_a_time"):  # cond row (reference caption) and uncond row (its negative)
        assert max(result[name]) <= 1e-4, (name, result[name])
    assert max(result["window_empty"]) <= 1e-4  # an empty step window is plain Wan
    assert result["expert_effect"] > 100 * 1e-4  # the tolerance is far below what the expert changes
    # the reference is embedded once per sampling run (once for the caption, once for its negative)
    assert max(result["three_calls"]) <= 1e-4
    assert result["reference_embeddings_in_a_run_of_three_calls"] == 2
    assert result["reference_embeddings_in_the_next_run"] == 2  # the run's cache never outlives it
    # VAPReferenceGuider: the formula against the golden predictions, one plain-Wan row more per step
    for r in ("0.5", "2.0", "-1.0"):
        assert result["guider"][r]["error"] <= 1e-4, (r, result["guider"][r])
        assert sorted(result["guider"][r]["rows"]) == [1, 2], result["guider"][r]  # cond+uncond batched, then noref
    for name in ("zero", "window_closed", "window_later"):  # bit for bit the stock CFGGuider, no third call
        assert result["guider"][name]["equal_to_cfg_guider"], (name, result["guider"][name])
        assert result["guider"][name]["rows"] == result["guider"][name]["cfg_guider_rows"] == [2]
    # two chained references: the ComfyUI binding computes what vap_core's standalone model does
    for placement, errors in result["two_references"].items():
        assert max(errors) <= 1e-4, (placement, errors)
    assert result["second_reference_effect"] > 100 * 1e-4
    assert result["block_attributes_missing"] == []  # ComfyUI's WanAttentionBlock has what the joint layer reads


@pytest.mark.floor
def test_the_cogvideox_case_inside_comfyui(public_golden, comfy):
    """ComfyUI 0.33's own CogVideoX modules, loaded by the stock UNETLoader, run the paper's forward through the
    pack: one CFG evaluation equals out.vap, and out.backbone outside the step window. Older ComfyUIs have no
    CogVideoX and say so."""
    returncode, lines, stderr = public_golden
    result = lines["cog_comfy.safetensors"]
    print(result)
    if harness.comfy_version(comfy[0]) < (0, 33):  # the pack's loader and apply node name the version needed
        assert len(result["skipped"]) == 2 and returncode == 0, result
        assert all("has no CogVideoX: update ComfyUI to 0.33 or later" in m for m in result["skipped"]), result
        return
    assert result["family"] == "cog" and result["dtype"] == "torch.float32"
    for name in ("batched", "one_at_a_time"):
        assert max(result[name]) <= 1e-4, (name, result[name])
    assert max(result["window_empty"]) <= 1e-4  # the paper's plain CogVideoX, not ComfyUI's own forward
    assert result["expert_effect"] > 100 * 1e-4


def test_the_cogvideox_nodes_build_the_papers_inputs_and_sample(comfy, tmp_path):
    """VAPCogVideoXImageToVideo and VAPEncodeReference on a CogVideoX VAE (random, real size): the start image's
    latent in frame 0 and zeros after; the reference picked evenly to the video's length, its latent and its first
    frame's, scaled as the model sees them, no CLIP; then one KSampler step with the expert."""
    if harness.comfy_version(comfy[0]) < (0, 33):
        pytest.skip("ComfyUI before 0.33 has no CogVideoX")
    root, python, base = comfy
    proc = harness.run_module(python, "tests.comfyui.cog_nodes_in_comfy", root,
                              harness.sharing_base(base, tmp_path / "base", "custom_nodes"),
                              capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(result)
    assert result["target"] == {"latent": [1, 16, 3, 8, 8], "concat": [1, 16, 3, 8, 8], "frame0_err": 0.0,
                                "after_frame0_zero": True}
    assert result["reference"] == {"x": [1, 32, 3, 8, 8], "clip_fea": True, "latent_err": 0.0, "frame0_err": 0.0,
                                   "after_frame0_zero": True}
    assert result["sampled"] == {"shape": [1, 16, 3, 8, 8], "finite": True}
    # VAPReferenceGuider's dynamic_cfg: each step's scale is the CogVideoX pipeline's formula
    steps = result["dynamic_cfg"]
    assert len(steps) == 4 and all(s["error"] <= 1e-4 for s in steps), steps
    assert len({round(s["scale"], 6) for s in steps}) > 1  # it really varies over the steps


def test_the_in_comfy_check_takes_case_files_and_fails_above_the_tolerance(comfy, tmp_path):
    """Cases kept elsewhere are checked the same way: one line per case file; exit 1 when one is off."""
    cases = [Case(name).path for name in ("cog_small", "case_comfy")]
    off = tmp_path / "cog_small_off.safetensors"
    tensors = load_file(str(cases[0]))
    tensors["out.vap"] = tensors["out.vap"] + 1e-3
    with safe_open(str(cases[0]), "pt") as f:
        save_file(tensors, str(off), metadata=f.metadata())
    returncode, lines, stderr = golden(comfy, tmp_path / "base", *cases, off)
    assert returncode == 1, stderr
    assert set(lines) == {"cog_small.safetensors", "case_comfy.safetensors", "cog_small_off.safetensors"}
    for name in ("cog_small.safetensors", "case_comfy.safetensors"):
        assert max(lines[name]["max_abs"].values()) <= 1e-4, lines[name]
    assert 0.9e-3 <= lines["cog_small_off.safetensors"]["max_abs"]["out.vap"] <= 1.1e-3


@pytest.mark.floor
def test_pack_loads_and_every_node_is_listed(server):
    info = server.get("/object_info")
    assert [n for n in NODE_IDS if n not in info] == []
    assert "IMPORT FAILED" not in "\n".join(l for l in server.log_text().splitlines() if "Video-As-Prompt" in l)
    experts = options(info["VAPExpertLoader"]["input"]["required"]["expert_name"])
    assert tiny.EXPERT in experts and tiny.NOT_AN_EXPERT in experts  # the released index json is listed...
    assert not any("-of-" in n for n in experts)  # ...its shards are not
    assert set(options(info["VAPCheckpointLoader"]["input"]["required"]["checkpoint"])) == {tiny.EXPERT, tiny.COG_CHECKPOINT}
    assert info["VAPApplyExpert"]["output"] == ["MODEL"]
    assert info["VAPEncodeReference"]["output"] == ["CONDITIONING", "CONDITIONING"]


def test_every_node_is_in_one_category_with_a_tooltip_on_every_input_and_output(server):
    info = server.get("/object_info")
    assert {info[n]["category"] for n in NODE_IDS} == {"Video-As-Prompt"}
    for n in NODE_IDS:
        inputs = {**info[n]["input"].get("required", {}), **info[n]["input"].get("optional", {})}
        untipped = [name for name, spec in inputs.items() if not (len(spec) > 1 and spec[1].get("tooltip"))]
        assert untipped == [], (n, untipped)
        assert len(info[n]["output_tooltips"]) == len(info[n]["output"]) and all(info[n]["output_tooltips"]), n
        assert "Video-As-Prompt" in info[n]["display_name"]  # what the node search matches "video as prompt" on


def options(spec) -> list:
    """The choices of a combo input in /object_info (V3 nodes: ["COMBO", {"options": [...]}])."""
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


@pytest.mark.floor
def test_api_workflow_runs_end_to_end_and_writes_the_video(server, comfy):
    base = comfy[2]
    history = server.run(harness.tiny_workflow(steps=2, length=9))
    assert harness.execution_error(history) is None, harness.execution_error(history)
    files = harness.saved_files(history)
    assert len(files) == 1
    path = base / "output" / files[0]["subfolder"] / files[0]["filename"]
    with av.open(str(path)) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)


def plain_wan(graph: dict) -> dict:
    """The same graph without the pack: UNETLoader straight to ModelSamplingSD3, WanImageToVideo's
    conditioning straight to the KSampler."""
    ids = {n["class_type"]: k for k, n in graph.items()}
    graph[ids["ModelSamplingSD3"]]["inputs"]["model"] = [ids["UNETLoader"], 0]
    sampler = graph[ids["KSampler"]]["inputs"]
    sampler["positive"], sampler["negative"] = [ids["WanImageToVideo"], 0], [ids["WanImageToVideo"], 1]
    for kind in ("VAPExpertLoader", "VAPApplyExpert", "VAPLoadReferenceVideo", "VAPEncodeReference"):
        del graph[ids[kind]]
    return graph


def test_reference_changes_output_and_an_empty_window_is_plain_wan(server, comfy):
    base = comfy[2]
    vap = run_latent(server, base, harness.tiny_workflow(steps=2))
    plain = run_latent(server, base, plain_wan(harness.tiny_workflow(steps=2)))
    empty = run_latent(server, base, harness.tiny_workflow(
        steps=2, changes={("VAPApplyExpert", "start_percent"): 0.4, ("VAPApplyExpert", "end_percent"): 0.4}))
    other_ref = run_latent(server, base, harness.tiny_workflow(steps=2, changes={("VAPLoadReferenceVideo", "selection"): "first"}))
    assert (vap - plain).abs().max() > 1e-3
    assert (vap - other_ref).abs().max() > 1e-4  # other reference frames, other video
    assert np.array_equal(empty.numpy(), plain.numpy())  # bit for bit


def expect_error(server, graph: dict, *words: str):
    status, answer = server.queue(graph)
    if status == 400:  # refused at validation (e.g. a file that is not in the list)
        text = json.dumps(answer)
    else:
        error = harness.execution_error(server.wait(answer["prompt_id"]))
        assert error is not None, f"expected an error mentioning {words}"
        text = error["exception_message"]
    for word in words:
        assert word in text, text
    return text


def test_bad_inputs_come_back_as_clear_errors_and_the_server_keeps_serving(server, comfy):
    wf = harness.tiny_workflow
    expect_error(server, wf(changes={("VAPExpertLoader", "expert_name"): "missing_expert.safetensors"}),
                 "missing_expert.safetensors' is not in models/vap")
    expect_error(server, wf(changes={("VAPExpertLoader", "expert_name"): tiny.NOT_AN_EXPERT}),
                 "not a VAP expert", "Load Diffusion Model")
    expect_error(server, wf(changes={("UNETLoader", "unet_name"): tiny.T2V_UNET}), "text-to-video", "Wan 2.1 image-to-video")
    expect_error(server, wf(changes={("UNETLoader", "unet_name"): tiny.WIDE_UNET}), "width 128 vs the backbone's 256")
    # the sizes only the expert file tells, against ComfyUI's model (the same check as vap_core's)
    expect_error(server, wf(changes={("VAPExpertLoader", "expert_name"): tiny.OTHER_TEXT_WIDTH_EXPERT}),
                 "the expert does not fit this backbone: text width 512 vs the backbone's 4096")
    expect_error(server, wf(changes={("VAPExpertLoader", "expert_name"): tiny.OTHER_PATCH_EXPERT}),
                 "the expert does not fit this backbone: patch size (1, 4, 4) vs the backbone's (1, 2, 2)")
    expect_error(server, wf(changes={("VAPLoadReferenceVideo", "video"): tiny.SHORT_REFERENCE,
                               ("VAPLoadReferenceVideo", "selection"): "first"}), "has 3 frames")
    error = harness.execution_error(server.run(wf(changes={("VAPLoadReferenceVideo", "video"): tiny.NOT_A_VIDEO})))
    assert "cannot be read as a video" in error["exception_message"]
    assert error["exception_type"] == "video_as_prompt.InputError"  # what the UI shows: no filesystem path
    history = server.run(wf(steps=1))  # and the next prompt runs normally
    assert harness.execution_error(history) is None


def test_repeated_reference_frames_are_said_and_a_still_or_tiny_reference_is_refused(server, comfy):
    wf = harness.tiny_workflow
    short = {("VAPLoadReferenceVideo", "video"): tiny.SHORT_REFERENCE}
    history = server.run(wf(steps=1, changes=short))  # its 3 frames for the 9 the video has: runs, and says so
    assert harness.execution_error(history) is None
    assert ("VAP: vap_tiny_short.mp4: the reference video has 3 frames and 9 were asked: 'evenly' repeats each about "
            "3.0 times") in server.log_text()
    expect_error(server, wf(changes={**short, ("VAPLoadReferenceVideo", "frames"): 65}),
                 "the reference video has 3 frames; 65 would repeat each about 22 times", "Keep at most 12 frames")
    expect_error(server, wf(changes={("VAPLoadReferenceVideo", "frames"): 1}), "1 reference frame is a still image")
    dot = [Image.new("RGB", (1, 1), (40 * i, 0, 0)) for i in range(5)]  # a 1x1 animated GIF
    dot[0].save(comfy[2] / "input" / "vap_1x1.gif", save_all=True, append_images=dot[1:], duration=100, loop=0)
    expect_error(server, wf(changes={("VAPLoadReferenceVideo", "video"): "vap_1x1.gif"}),
                 f"the reference is 1x1, far below the video's {tiny.SIZE}x{tiny.SIZE}", "at least 8x8")


def refused(server, graph: dict) -> list[dict]:
    """The errors of a prompt ComfyUI refuses at validation (before any node runs)."""
    status, answer = server.queue(graph)
    assert status == 400, f"expected a validation error, got {status}: {answer}"
    return [e for node in answer["node_errors"].values() for e in node["errors"]]


def test_bad_inputs_are_refused_at_validation_once_each(server, comfy, tmp_path):
    wf = harness.tiny_workflow
    (errors,) = refused(server, wf(changes={("VAPExpertLoader", "expert_name"): "missing_expert.safetensors"}))
    assert "missing_expert.safetensors' is not in models/vap" in errors["details"]
    (errors,) = refused(server, from_released_checkpoint(wf(), checkpoint="nothing.safetensors"))
    assert "'nothing.safetensors' is not in models/vap" in errors["details"]
    (errors,) = refused(server, wf(changes={("VAPLoadReferenceVideo", "video"): "not_there.mp4"}))
    assert "reference video 'not_there.mp4' is not in ComfyUI's input folder" in errors["details"]
    outside = comfy[2] / "outside.mp4"  # a real video, beside the input folder
    outside.write_bytes((comfy[2] / "input" / tiny.REFERENCE).read_bytes())
    for name in ("../outside.mp4", str(outside)):
        (errors,) = refused(server, wf(changes={("VAPLoadReferenceVideo", "video"): name}))
        assert "is outside ComfyUI's input folder" in errors["details"], errors
    # ComfyUI's own range checks still apply to the other inputs
    (errors,) = refused(server, wf(changes={("VAPLoadReferenceVideo", "frames"): 1026}))
    assert errors["type"] == "value_bigger_than_max" and errors["details"] == "frames"
    (errors,) = refused(server, wf(changes={("VAPLoadReferenceVideo", "frames"): 0}))
    assert errors["type"] == "value_smaller_than_min"
    bogus = wf(changes={("VAPLoadReferenceVideo", "selection"): "bogus"})
    if harness.comfy_version(comfy[0]) >= (0, 33):  # ComfyUI itself now checks a V3 combo's value
        (errors,) = refused(server, bogus)
        assert errors["type"] == "value_not_in_list" and "'bogus' not in ['evenly', 'first', 'random']" in errors["details"]
    else:
        expect_error(server, bogus, "selection 'bogus' is not one of evenly, first, random")


def test_a_portrait_phone_clip_comes_out_upright(server, comfy):
    """Stored landscape with a 90-degree display rotation: the node's frames stand upright, by content."""
    write_phone_clip(comfy[2] / "input" / "vap_phone.mp4", (0, 1, -1, 0))
    history = server.run({
        "1": {"class_type": "VAPLoadReferenceVideo", "inputs": {"video": "vap_phone.mp4", "frames": 3,
                                                               "selection": "first", "seed": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "vap_phone"}}})
    assert harness.execution_error(history) is None, harness.execution_error(history)
    item = history["outputs"]["2"]["images"][0]
    frame = np.asarray(Image.open(comfy[2] / "output" / item["subfolder"] / item["filename"]))[:, :, 0] / 255
    assert frame.shape == (64, 32)  # portrait
    assert edges(frame) == ("right", "top")  # the stored top edge turned to the right, the left edge to the top


@pytest.mark.floor
def test_reference_guidance_workflow_runs_and_at_zero_is_the_papers_sampling(server, comfy):
    base = comfy[2]
    guided = run_latent(server, base, harness.tiny_workflow(steps=2, workflow=GUIDANCE_WORKFLOW))
    stronger = run_latent(server, base, harness.tiny_workflow(
        steps=2, workflow=GUIDANCE_WORKFLOW, changes={("VAPReferenceGuider", "reference_cfg"): 3.0}))
    paper = run_latent(server, base, harness.tiny_workflow(
        steps=2, workflow=GUIDANCE_WORKFLOW, changes={("VAPReferenceGuider", "reference_cfg"): 0.0}))
    stock = harness.tiny_workflow(steps=2, workflow=GUIDANCE_WORKFLOW)
    guider = next(n for n in stock.values() if n["class_type"] == "VAPReferenceGuider")
    guider["class_type"] = "CFGGuider"
    for name in ("reference_cfg", "start_percent", "end_percent"):
        del guider["inputs"][name]
    assert np.array_equal(paper.numpy(), run_latent(server, base, stock).numpy())  # 0: the stock CFGGuider, bit for bit
    assert (guided - paper).abs().max() > 1e-4 and (stronger - guided).abs().max() > 1e-4


@pytest.mark.floor
def test_two_references_workflow_runs_and_both_references_count(server, comfy):
    base = comfy[2]

    def two(placement="sequential"):
        graph = harness.tiny_workflow(steps=2, workflow=TWO_REFERENCES_WORKFLOW, changes={("VAPApplyExpert", "placement"): placement})
        graph["25"]["inputs"]["selection"] = "first"  # the second reference: other frames of the clip
        return run_latent(server, base, graph)
    one = run_latent(server, base, harness.tiny_workflow(steps=2))
    sequential, shared = two(), two("shared")
    assert (sequential - one).abs().max() > 1e-4  # the second reference takes part
    assert (sequential - shared).abs().max() > 1e-4  # and where it sits in time matters


def test_a_patch_that_skips_an_expert_layer_fails_loudly_and_other_layers_are_fine(server):
    """Skip Layer Guidance on a layer without an expert block runs; on one with it (layer 2 of the
    tiny model's 0 and 2), the pass refuses to run the reference out of step."""
    def with_slg(layers: str) -> dict:
        graph = harness.tiny_workflow(steps=1)
        ids = {n["class_type"]: k for k, n in graph.items()}
        graph["950"] = {"class_type": "SkipLayerGuidanceDiT", "inputs": {
            "model": graph[ids["KSampler"]]["inputs"]["model"], "double_layers": layers, "single_layers": "",
            "scale": 3.0, "start_percent": 0.0, "end_percent": 1.0, "rescaling_scale": 0.0}}
        graph[ids["KSampler"]]["inputs"]["model"] = ["950", 0]
        return graph
    assert harness.execution_error(server.run(with_slg("1"))) is None
    error = harness.execution_error(server.run(with_slg("2")))
    assert error is not None and "VAP expert layers [2] never ran" in error["exception_message"], error


def with_easycache(graph: dict, place: str) -> dict:
    """Stock EasyCache (its defaults) on the sampler's model, or on the model Apply VAP Expert takes."""
    ids = {n["class_type"]: k for k, n in graph.items()}
    user = graph[ids["KSampler" if place == "after ModelSamplingSD3" else "VAPApplyExpert"]]["inputs"]
    graph["960"] = {"class_type": "EasyCache", "inputs": {"model": user["model"], "reuse_threshold": 0.2,
                                                          "start_percent": 0.15, "end_percent": 0.95, "verbose": False}}
    user["model"] = ["960", 0]
    return graph


@pytest.mark.parametrize("place", ["after ModelSamplingSD3", "before Apply VAP Expert"])
def test_easycache_skips_steps_with_the_expert_applied(server, comfy, place):
    """A step EasyCache skips runs no block at all: a cached answer, not a layer skipped by another patch."""
    before = len(server.log_text())
    vap = run_latent(server, comfy[2], with_easycache(harness.tiny_workflow(steps=20), place))
    skipped = re.findall(r"EasyCache - skipped (\d+)/20 steps", server.log_text()[before:])
    assert len(skipped) == 1 and int(skipped[0]) > 0, server.log_text()[before:][-3000:]
    plain = run_latent(server, comfy[2], with_easycache(plain_wan(harness.tiny_workflow(steps=20)), "after ModelSamplingSD3"))
    assert (vap - plain).abs().max() > 1e-3  # the expert acted on the steps that ran


def with_scale_rope(graph: dict, scale_t: float, shift_t: float) -> dict:
    """Stock ScaleROPE (ComfyUI 0.33) on the sampler's model."""
    ids = {n["class_type"]: k for k, n in graph.items()}
    sampler = graph[ids["KSampler"]]["inputs"]
    graph["970"] = {"class_type": "ScaleROPE", "inputs": {"model": sampler["model"], "scale_x": 1.0, "shift_x": 0.0,
                                                          "scale_y": 1.0, "shift_y": 0.0, "scale_t": scale_t, "shift_t": shift_t}}
    sampler["model"] = ["970", 0]
    return graph


def test_a_temporal_rope_shift_moves_the_reference_with_the_target(server, comfy):
    """Attention sees only position differences: with the reference moved with the target (and spaced
    like it), a shift_t changes nothing, at any scale_t. Left behind, it would change the result."""
    if harness.comfy_version(comfy[0]) < (0, 33):
        pytest.skip("ComfyUI 0.3.64 has no RoPE patches (rope_options, ScaleROPE)")
    base, wf = comfy[2], harness.tiny_workflow
    plain = run_latent(server, base, plain_wan(wf(steps=2)))
    for scale in (1.0, 2.0):
        unshifted = run_latent(server, base, with_scale_rope(wf(steps=2), scale, 0.0))
        shifted = run_latent(server, base, with_scale_rope(wf(steps=2), scale, 4.0))
        assert (shifted - unshifted).abs().max() <= 1e-4, scale
        assert (unshifted - plain).abs().max() > 1e-3  # the expert acts


def test_another_nodes_attention_patch_acts_on_the_layers_without_an_expert_block_and_is_said(server, comfy):
    if harness.comfy_version(comfy[0]) < (0, 33):
        pytest.skip("ComfyUI 0.3.64's Wan blocks call no attention patches")
    graph = harness.tiny_workflow(steps=1)
    ids = {n["class_type"]: k for k, n in graph.items()}
    sampler = graph[ids["KSampler"]]["inputs"]
    graph["980"] = {"class_type": "VAPTestAttentionPatch", "inputs": {"model": sampler["model"], "scale": 0.5}}
    sampler["model"] = ["980", 0]
    before = len(server.log_text())
    assert harness.execution_error(server.run(graph)) is None
    log = server.log_text()[before:]
    config = Case("case_comfy").config
    layers = config["block_idx_with_mot_ref"]
    assert {int(n) for n in re.findall(r"VAPTestAttentionPatch ran on block (\d+)", log)} == \
        set(range(config["num_layers"])) - set(layers)
    assert log.count(f"VAP: another node patches this model's attention (attn2_patch); the patches run on the layers "
                     f"without an expert block only: the expert layers {layers} run") == 1


def test_a_reversed_expert_window_warns(server):
    history = server.run(harness.tiny_workflow(steps=1, changes={
        ("VAPApplyExpert", "start_percent"): 0.6, ("VAPApplyExpert", "end_percent"): 0.4}))
    assert harness.execution_error(history) is None
    assert "start_percent 0.6 is after end_percent 0.4, so the expert never runs" in server.log_text()


def test_the_reference_is_encoded_at_the_videos_own_size(server, comfy):
    """VAP Encode Reference takes the size from WanImageToVideo's conditioning: a non-square video runs."""
    graph = harness.tiny_workflow(changes={("WanImageToVideo", "width"): 96, ("WanImageToVideo", "height"): 48})
    latent = run_latent(server, comfy[2], graph)
    assert latent.shape[-2:] == (6, 12)


def from_released_checkpoint(graph: dict, checkpoint: str = tiny.EXPERT) -> dict:
    """Backbone and expert both from the released checkpoint through VAPCheckpointLoader."""
    ids = {n["class_type"]: k for k, n in graph.items()}
    graph[ids["UNETLoader"]] = {"class_type": "VAPCheckpointLoader", "inputs": {
        "checkpoint": checkpoint, "weight_dtype": "default", "expert_dtype": "default"}}
    apply = graph[ids["VAPApplyExpert"]]["inputs"]
    apply["model"], apply["expert"] = [ids["UNETLoader"], 0], [ids["UNETLoader"], 1]
    del graph[ids["VAPExpertLoader"]]
    return graph


def test_checkpoint_loader_gives_the_same_model_as_the_stock_loader(server, comfy):
    base = comfy[2]
    stock = run_latent(server, base, harness.tiny_workflow(steps=2))
    released = run_latent(server, base, from_released_checkpoint(harness.tiny_workflow(steps=2)))
    assert np.array_equal(stock.numpy(), released.numpy())


def test_fp8_weights_cfg1_and_a_latent_batch(server, comfy):
    base = comfy[2]
    default = run_latent(server, base, harness.tiny_workflow(steps=2))
    fp8 = run_latent(server, base, harness.tiny_workflow(steps=2, changes={
        ("UNETLoader", "weight_dtype"): "fp8_e4m3fn", ("VAPExpertLoader", "dtype"): "fp8_e4m3fn"}))
    assert 0 < (fp8 - default).abs().max() < 0.25 * default.abs().max()  # rounded weights, same model
    batch = run_latent(server, base, harness.tiny_workflow(steps=2, changes={
        ("WanImageToVideo", "batch_size"): 2, ("KSampler", "cfg"): 1.0}))
    assert batch.shape[0] == 2 and bool(batch.isfinite().all())


def test_other_reference_sources(server, comfy):
    """An animated GIF through VAPLoadReferenceVideo, and frames from ComfyUI's own LoadVideo +
    GetVideoComponents straight into VAPEncodeReference."""
    base = comfy[2]
    one_euler_step = {("KSampler", "steps"): 1, ("KSampler", "sampler_name"): "euler"}
    gif = run_latent(server, base, harness.tiny_workflow(changes={
        **one_euler_step, ("VAPLoadReferenceVideo", "video"): tiny.GIF_REFERENCE,
        ("VAPLoadReferenceVideo", "selection"): "first"}))
    graph = harness.tiny_workflow(changes=one_euler_step)
    ids = {n["class_type"]: k for k, n in graph.items()}
    graph["901"] = {"class_type": "LoadVideo", "inputs": {"file": tiny.REFERENCE}}
    graph["902"] = {"class_type": "GetVideoComponents", "inputs": {"video": ["901", 0]}}
    graph[ids["VAPEncodeReference"]]["inputs"]["reference"] = ["902", 0]
    del graph[ids["VAPLoadReferenceVideo"]]
    stock = run_latent(server, base, graph)
    plain = run_latent(server, base, plain_wan(harness.tiny_workflow(changes=one_euler_step)))
    assert gif.shape == stock.shape == plain.shape
    # a single step at sigma 1 (the expert acts there too), and each reference gives its own result
    assert (gif - stock).abs().max() > 1e-3 and (stock - plain).abs().max() > 1e-3


def loader_memory(comfy, mode: str, family: str) -> dict:
    return in_comfy(comfy, "tests.comfyui.loader_memory", mode, family)


def needs_cogvideox(comfy, family):
    if family == "cog" and harness.comfy_version(comfy[0]) < (0, 33):
        pytest.skip("ComfyUI before 0.33 has no CogVideoX")


@pytest.mark.parametrize("family", ["wan", "cog"])
def test_checkpoint_loader_holds_no_second_copy_of_the_backbone(comfy, family):
    """VAPCheckpointLoader's peak memory, less the expert it also loads, is that of the stock
    UNETLoader reading the same backbone from a file in ComfyUI's layout."""
    needs_cogvideox(comfy, family)
    sizes = loader_memory(comfy, "write", family)
    released, stock = loader_memory(comfy, "released", family), loader_memory(comfy, "stock", family)
    print(f"\n{family}: backbone file {sizes['backbone_bytes'] / 2**20:.0f} MiB; model in memory "
          f"{stock['model_bytes'] / 2**20:.0f} MiB; peak added: stock {stock['peak_added'] / 2**20:.0f} MiB, released "
          f"{released['peak_added'] / 2**20:.0f} MiB (of which expert {released['expert_bytes'] / 2**20:.0f} MiB)")
    assert released["model_bytes"] == stock["model_bytes"]
    assert released["peak_added"] - released["expert_bytes"] <= 1.05 * stock["peak_added"] + 32 * 2**20


@pytest.mark.parametrize("family, dtype", [("wan", "bf16"), ("wan", "default"), ("wan", "fp8_e4m3fn"), ("cog", "bf16")])
def test_expert_loader_reads_only_the_expert(comfy, family, dtype):
    """From a released checkpoint whose backbone is 6x (Wan) or 12x (CogVideoX) the expert, VAPExpertLoader's
    peak memory is the loaded expert plus a fixed margin (conversion temporaries and the allocator's per-thread
    arenas: 3 to 100 MiB measured), whatever dtype it converts to; far below the backbone."""
    needs_cogvideox(comfy, family)
    sizes = loader_memory(comfy, "write", family)
    loaded = loader_memory(comfy, f"expert:{dtype}", family)
    print(f"\n{family} expert {dtype}: {loaded['expert_bytes'] / 2**20:.0f} MiB loaded, peak added "
          f"{loaded['peak_added'] / 2**20:.0f} MiB (released file: expert {sizes['expert_bytes'] / 2**20:.0f} MiB bf16, "
          f"backbone {sizes['backbone_bytes'] / 2**20:.0f} MiB)")
    assert loaded["peak_added"] <= loaded["expert_bytes"] + 128 * 2**20 < sizes["backbone_bytes"]


def with_lora(graph: dict, strength: float) -> dict:
    """A LoRA on the backbone, between the stock loader and Apply VAP Expert."""
    ids = {n["class_type"]: k for k, n in graph.items()}
    graph["903"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
        "model": [ids["UNETLoader"], 0], "lora_name": tiny.LORA, "strength_model": strength}}
    graph[ids["VAPApplyExpert"]]["inputs"]["model"] = ["903", 0]
    return graph


def test_a_lora_on_the_backbone_reaches_the_joint_layers(server, comfy):
    base = comfy[2]
    without = run_latent(server, base, harness.tiny_workflow(steps=2))
    zero = run_latent(server, base, with_lora(harness.tiny_workflow(steps=2), 0.0))
    lora = run_latent(server, base, with_lora(harness.tiny_workflow(steps=2), 1.0))
    assert np.array_equal(zero.numpy(), without.numpy())
    assert (lora - without).abs().max() > 1e-3  # it patches layer 0's q, which the joint layer calls


def test_other_backbone_weights_warn_but_run(server):
    log_before = server.log_text()
    history = server.run(harness.tiny_workflow(steps=1, changes={("UNETLoader", "unet_name"): tiny.RETRAINED_UNET}))
    assert harness.execution_error(history) is None
    new_log = server.log_text()[len(log_before):]
    assert "differ from the backbone the expert was trained with" in new_log
    assert "differ from the backbone" not in log_before  # the right backbone gave no warning


def test_batch_runner_end_to_end_with_a_bad_row_and_a_resumed_run(server, comfy, tmp_path):
    """python -m vap_batch against the server: two videos written, the bad row reported with the
    server's message, and a rerun skips the two finished rows."""
    base = comfy[2]
    media = harness.batch_media(base, tmp_path / "media")
    (media / "jobs.csv").write_text(
        "name,reference,target,reference_caption,target_caption,seed\n"
        "horse,ref.mp4,target.png,a sneaker inflates and rises,a horse inflates and rises,1\n"
        "from_video,ref.mp4,target_clip.mp4,a sneaker inflates,a clip's first frame inflates,2\n"
        "bad,bad.mp4,target.png,broken reference,a horse,3\n")
    workflow = tmp_path / "tiny_workflow.json"
    workflow.write_text(json.dumps(harness.tiny_workflow(steps=2)))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vap_batch", str(media / "jobs.csv"), "--out", str(out), "--server", server.url,
               "--workflow", str(workflow)]

    first = subprocess.run(command, capture_output=True, text=True, cwd=harness.ROOT, timeout=900)
    assert first.returncode == 1, first.stdout + first.stderr  # one row failed
    for name in ("horse", "from_video"):
        with av.open(str(out / f"{name}.mp4")) as video:
            frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
        assert len(frames) == 9 and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)
    report = {r["name"]: r for r in json.loads((out / "report.json").read_text())}
    assert report["horse"]["status"] == report["from_video"]["status"] == "ok"
    assert report["bad"]["status"] == "failed" and "cannot be read as a video" in report["bad"]["message"]
    assert "2 ok, 1 failed, 0 skipped" in first.stdout

    again = subprocess.run(command, capture_output=True, text=True, cwd=harness.ROOT, timeout=900)
    assert "0 ok, 1 failed, 2 skipped" in again.stdout, again.stdout + again.stderr
    assert sorted(p.name for p in out.iterdir()) == [".posters", "from_video.mp4", "horse.mp4", "index.html", "report.json"]
