"""The pack's subgraph blueprints, "Video-As-Prompt (Wan 2.1 I2V)" and "(CogVideoX-5B I2V)" (subgraphs/, listed by ComfyUI 0.33 and
later as a ready-made node): served at /global_subgraphs; in the real frontend (tests/browser/check_subgraph.mjs)
found by the node search, dropped into the stock Wan 2.1 I2V template, queued as the shipped API workflow's
nodes and values, and run to a video with the tiny models."""
from __future__ import annotations

import json
import subprocess

import av
import pytest

from devkit import comfy_server as harness
from devkit import tiny_names as tiny
from tests.helpers import screenshots_of, tiny_widgets
from tools import ui_workflow
from vap_batch.workflow import COG_WORKFLOW, DEFAULT_WORKFLOW

CHECK = harness.ROOT / "tests" / "browser" / "check_subgraph.mjs"
SPEC = json.loads(ui_workflow.SUBGRAPH_SPEC.read_text())
NAME = SPEC["name"]
IN = ["model", "clip", "positive", "negative", "vae", "clip_vision"]
OUT = ["MODEL", "positive", "negative"]


@pytest.fixture(scope="module", autouse=True)
def pack_subgraphs(comfyui):
    if harness.comfy_version(comfyui[0]) < (0, 33):
        pytest.skip(f"ComfyUI {'.'.join(map(str, harness.comfy_version(comfyui[0])))} lists no pack subgraphs "
                    "(0.33 and later do): set COMFYUI_PATH to a ComfyUI 0.33")


def test_it_is_served_as_a_blueprint_of_the_pack(server):
    listed = {key: entry for key, entry in server.get("/global_subgraphs").items() if entry["name"] == NAME}
    assert len(listed) == 1, "listed once, under the blueprint's file name"
    (key, entry), = listed.items()
    assert entry["source"] == "custom_node" and entry["info"]["node_pack"] == "custom_nodes.ComfyUI-Video-As-Prompt"
    blueprint = json.loads(server.get(f"/global_subgraphs/{key}")["data"])
    assert blueprint == json.loads(ui_workflow.SUBGRAPH.read_text())
    (definition,) = blueprint["definitions"]["subgraphs"]
    assert definition["name"] == NAME and definition["category"] == "Video-As-Prompt" and definition["description"]
    assert [i["name"] for i in definition["inputs"]][:len(IN)] == IN
    assert [o["name"] for o in definition["outputs"]] == OUT


def tiny_spec(path):
    path.write_text(json.dumps({"swap": harness.TINY_SWAP, "widgets": tiny_widgets(), "host": {"video": tiny.REFERENCE},
                                "inner": {"VAPLoadReferenceVideo": {"frames": 9}}}))
    return path


def canonical(prompt: dict, node_id: str, inside) -> str:
    """A node named as both graphs share it: a node of the subgraph by its title, any other by its class."""
    node = prompt[node_id]
    return f"{node['class_type']} '{node['_meta']['title']}'" if inside(node_id) else node["class_type"]


def as_compared(prompt: dict, inside) -> dict:
    """{canonical name: {input: value, or (canonical source, slot) for a link}} of the subgraph's nodes."""
    nodes = {}
    for node_id, node in prompt.items():
        if inside(node_id):
            nodes[canonical(prompt, node_id, inside)] = {
                name: (canonical(prompt, v[0], inside), v[1]) if isinstance(v, list) else v for name, v in node["inputs"].items()}
    return nodes


def test_dropped_into_the_stock_wan_graph_it_queues_the_shipped_nodes_and_runs_to_a_video(frontend, tmp_path):
    proc = subprocess.run(["node", str(CHECK), frontend.url, NAME, str(tiny_spec(tmp_path / "tiny.json")),
                           str(screenshots_of(frontend))], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    assert [e["name"] for e in result["listed"]].count(NAME) == 1
    added = result["added"]
    assert added is not None, "the node search adds the blueprint"
    assert added["inputs"] == IN + [name for _, _, name, _ in SPEC["widgets"]] and added["outputs"] == OUT
    api = json.loads(DEFAULT_WORKFLOW.read_text())
    for api_id, widget, name, _ in SPEC["widgets"]:  # each promoted widget opens at the shipped workflow's value
        assert added["widgets"][name] == api[api_id]["inputs"][widget], name

    # what the frontend queues: the subgraph's nodes are the shipped API workflow's, same values and links...
    prompt, sub = result["prompt"], added["id"]
    assert as_compared(prompt, lambda i: i.startswith(f"{sub}:")) == as_compared(api, lambda i: i in SPEC["nodes"])
    # ...and its outputs feed the stock graph where the shipped workflow's feed it
    by_class = {node["class_type"]: node for node in prompt.values()}
    assert [prompt[by_class["ModelSamplingSD3"]["inputs"]["model"][0]]["class_type"]] == ["VAPApplyExpert"]
    encode = by_class["KSampler"]["inputs"]["positive"][0]
    assert prompt[encode]["class_type"] == "VAPEncodeReference"
    assert by_class["KSampler"]["inputs"]["positive"] == [encode, 0] and by_class["KSampler"]["inputs"]["negative"] == [encode, 1]

    run = result["run"]
    assert run["queue_status"] == 200, run["queue_answer"]
    assert run["error"] is None and "execution_success" in run["events"], run
    video = next(f for o in run["outputs"] for f in o["output"].get("images", []) if f["filename"].endswith(".mp4"))
    with av.open(str(frontend.base / "output" / video["subfolder"] / video["filename"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)
    assert result["page_errors"] == [], result["page_errors"]


COG_SPEC = json.loads(ui_workflow.COG_SUBGRAPH_SPEC.read_text())
COG_IN = ["clip", "positive", "negative", "vae"]


def test_the_cogvideox_blueprint_is_served_too(server):
    listed = {key: entry for key, entry in server.get("/global_subgraphs").items() if entry["name"] == COG_SPEC["name"]}
    assert len(listed) == 1
    (key, entry), = listed.items()
    blueprint = json.loads(server.get(f"/global_subgraphs/{key}")["data"])
    assert blueprint == json.loads(ui_workflow.COG_SUBGRAPH.read_text())
    (definition,) = blueprint["definitions"]["subgraphs"]
    assert definition["category"] == "Video-As-Prompt" and "0.33" in definition["description"]
    assert [i["name"] for i in definition["inputs"]][:len(COG_IN)] == COG_IN
    assert [o["name"] for o in definition["outputs"]] == OUT


def test_the_cogvideox_blueprint_rebuilds_the_shipped_template_and_runs(frontend, tmp_path):
    """Dropped into the CogVideoX template without its VAP nodes and wired in (its MODEL to the guider and the
    scheduler, its conditioning to the guider), the frontend queues the shipped template; it runs to a video."""
    api = json.loads(COG_WORKFLOW.read_text())
    graph = {"name": "the CogVideoX template", "api": api, "remove": COG_SPEC["nodes"],
             "in": [["2", 0, "clip"], ["13", 0, "positive"], ["13", 1, "negative"], ["3", 0, "vae"]],
             "out": [[0, "16", "model"], [0, "23", "model"], [1, "16", "positive"], [2, "16", "negative"]]}
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({"swap": harness.TINY_SWAP, "widgets": tiny_widgets(), "host": {"video": tiny.REFERENCE},
                                "inner": {"VAPLoadReferenceVideo": {"frames": 9}}, "graph": graph}))
    proc = subprocess.run(["node", str(CHECK), frontend.url, COG_SPEC["name"], str(spec), str(screenshots_of(frontend))],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    added = result["added"]
    assert added is not None, ("the node search adds the blueprint", result.get("listed"), result.get("page_errors"))
    assert added["inputs"] == COG_IN + [name for _, _, name, _ in COG_SPEC["widgets"]] and added["outputs"] == OUT
    for api_id, widget, name, _ in COG_SPEC["widgets"]:
        assert added["widgets"][name] == api[api_id]["inputs"][widget], name
    prompt, sub = result["prompt"], added["id"]
    assert as_compared(prompt, lambda i: i.startswith(f"{sub}:")) == as_compared(api, lambda i: i in COG_SPEC["nodes"])
    # the rest is the shipped template's, wired to the blueprint where the template wires its VAP nodes
    outside = [n for i, n in prompt.items() if ":" not in i]
    assert sorted(n["class_type"] for n in outside) == sorted(n["class_type"] for k, n in api.items()
                                                             if k not in COG_SPEC["nodes"])
    (guider,) = [n["inputs"] for n in outside if n["class_type"] == "VAPReferenceGuider"]
    assert prompt[guider["model"][0]]["class_type"] == "VAPApplyExpert"
    assert prompt[guider["positive"][0]]["class_type"] == "VAPEncodeReference" and guider["negative"][1] == 1
    run = result["run"]
    assert run["queue_status"] == 200, run["queue_answer"]
    assert run["error"] is None and "execution_success" in run["events"], run
    video = next(f for o in run["outputs"] for f in (o["output"] or {}).get("images", []) if f["filename"].endswith(".mp4"))
    with av.open(str(frontend.base / "output" / video["subfolder"] / video["filename"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)
    assert result["page_errors"] == [], result["page_errors"]
