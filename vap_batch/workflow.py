"""Filling the pack's API workflow with one job's values, by node ID and input name; for the rows that
ask for them, adding reference guidance and a second reference as the pack's other workflows have them."""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

from .jobs import Job

DEFAULT_WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "api" / "vap_wan21_i2v_480p.json"
GUIDANCE_WORKFLOW = DEFAULT_WORKFLOW.with_name("vap_wan21_i2v_480p_reference_guidance.json")
TWO_REFERENCES_WORKFLOW = DEFAULT_WORKFLOW.with_name("vap_wan21_i2v_480p_two_references.json")
# CogVideoX-5B-I2V (ComfyUI 0.33 and later): sampled through VAPReferenceGuider (dynamic CFG), nodes 21-24
COG_WORKFLOW = DEFAULT_WORKFLOW.with_name("vap_cogvideox5b_i2v_480x720.json")
OUTPUT_NODE = "19"  # SaveVideo
# job field -> the (node ID, input name) pairs of workflows/api/vap_wan21_i2v_480p.json it sets
FIELDS = {
    "reference": [("14", "video")], "target": [("11", "image")],
    "target_caption": [("8", "text")], "reference_caption": [("10", "text")],
    "negative_prompt": [("9", "text")], "reference_negative_prompt": [("20", "text")],
    "seed": [("16", "seed")], "steps": [("16", "steps")], "cfg": [("16", "cfg")],
    "frames": [("13", "length"), ("14", "frames")],
    "width": [("13", "width")], "height": [("13", "height")],
    "expert": [("5", "expert_name")], "rope_delta": [("6", "rope_delta")],
    "start_percent": [("6", "start_percent")], "end_percent": [("6", "end_percent")],
    "output_prefix": [(OUTPUT_NODE, "filename_prefix")],
}
GUIDANCE_NODES = ("21", "22", "23", "24")  # RandomNoise, KSamplerSelect, BasicScheduler, SamplerCustomAdvanced
SECOND_REFERENCE_NODES = ("25", "26", "27", "28")  # its loader, caption, negative caption, VAPEncodeReference
# the fields of the nodes those add (the others are set before they are added, and carried over)
ADDED_FIELDS = {"reference_cfg": [("16", "reference_cfg")], "reference_2": [("25", "video")],
                "reference_2_caption": [("26", "text")], "reference_2_negative_prompt": [("27", "text")]}


# a workflow sampled through VAPReferenceGuider at node 16 (the CogVideoX template) has the seed and the steps
# on its RandomNoise 21 and BasicScheduler 23; one loaded by VAPCheckpointLoader at node 5 names its checkpoint
GUIDER_FIELDS = {"seed": [("21", "noise_seed")], "steps": [("23", "steps")]}
CHECKPOINT_FIELDS = {"expert": [("5", "checkpoint")]}


def fields_of(graph: dict) -> dict:
    """FIELDS as this workflow holds them."""
    fields = dict(FIELDS)
    if graph.get("16", {}).get("class_type") == "VAPReferenceGuider":
        fields.update(GUIDER_FIELDS)
    if graph.get("5", {}).get("class_type") == "VAPCheckpointLoader":
        fields.update(CHECKPOINT_FIELDS)
    return fields


class WorkflowError(ValueError):
    """The workflow lacks a node or input the batch runner fills."""


def _read(path: Path) -> dict:
    try:
        graph = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WorkflowError(f"cannot read the API workflow {path}: {err}") from None
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise WorkflowError(f"{path} is not an API-format workflow (export it with 'Export (API)' in ComfyUI).")
    return graph


@functools.cache
def _template(path: Path) -> dict:
    """One of the pack's own workflows, read once (callers copy what they take from it)."""
    return _read(path)


def load_workflow(path=DEFAULT_WORKFLOW) -> dict:
    graph = _read(path)
    missing = [f"node {node} input '{name}' (for {field})" for field, targets in fields_of(graph).items()
               for node, name in targets if name not in graph.get(node, {}).get("inputs", {})]
    if missing:
        raise WorkflowError(f"{path} lacks what the batch runner fills: {'; '.join(missing)}. Use the pack's "
                            "workflows/api/vap_wan21_i2v_480p.json, or keep its node IDs in yours (for reference "
                            "guidance or a second reference, give that one and the columns reference_cfg or "
                            "reference_2).")
    return graph


def fill(graph: dict, values: dict, fields: dict = FIELDS) -> dict:
    """A copy of the workflow with each given field's inputs set."""
    out = copy.deepcopy(graph)
    for field, value in values.items():
        for node, name in fields[field]:
            out[node]["inputs"][name] = value
    return out


def job_graph(workflow: dict, values: dict) -> dict:
    """The graph of one row: the workflow with its fields filled, then with reference guidance if the row
    has reference_cfg and a second reference if it has reference_2 (their nodes take over what is already
    filled: the sampler's seed, steps and cfg, the first reference's frames), and those columns filled."""
    fields = fields_of(workflow)
    graph = fill(workflow, {k: v for k, v in values.items() if k in fields}, fields)
    if "reference_cfg" in values and workflow.get("16", {}).get("class_type") != "VAPReferenceGuider":  # else it is there
        graph = with_reference_guidance(graph)
    if "reference_2" in values:
        graph = with_second_reference(graph)
    return fill(graph, {k: v for k, v in values.items() if k not in FIELDS}, ADDED_FIELDS)


def job_values(job: Job, uploaded: dict) -> dict:
    """The workflow fields of a row; `uploaded` holds the server's names of its media files."""
    values = {**uploaded, "reference_caption": job.reference_caption, "target_caption": job.target_caption,
              "output_prefix": f"vap_batch/{job.name}", **job.overrides}
    if job.reference_2 is not None:
        values["reference_2_caption"] = job.reference_2_caption
    return values


def check_workflow(jobs: list[Job], workflow: dict, path) -> None:
    """Every row's graph can be built from the workflow (the rows with reference_cfg or reference_2 add
    nodes to it), so that a workflow unfit for some rows stops the run before anything is queued."""
    problems: dict[str, list[int]] = {}
    for job in jobs:
        media = {"reference": "", "target": "", **({"reference_2": ""} if job.reference_2 is not None else {})}
        try:
            job_graph(workflow, job_values(job, media))
        except WorkflowError as err:
            problems.setdefault(str(err), []).append(job.row)
    if problems:
        raise WorkflowError(f"the workflow {path} cannot run some rows; nothing was queued:\n  " + "\n  ".join(
            f"row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}: {why}." for why, rows in problems.items()))


def with_reference_guidance(graph: dict) -> dict:
    """The graph sampled as workflows/api/vap_wan21_i2v_480p_reference_guidance.json samples: its
    VAPReferenceGuider in place of the KSampler 16 and its nodes 21-24, which take over the KSampler's
    inputs and settings; what read the KSampler's latent reads the new sampler's (24)."""
    sampler = graph.get("16", {})
    if sampler.get("class_type") != "KSampler":
        raise WorkflowError(f"reference guidance replaces the KSampler 16 by the reference guider, and node 16 here "
                            f"is {sampler.get('class_type', 'missing')}")
    _check_free(graph, GUIDANCE_NODES, "reference guidance")
    ks, template = sampler["inputs"], _template(GUIDANCE_WORKFLOW)
    out = _rewired(graph, "16", "24")
    out["16"] = _node(template["16"], model=ks["model"], positive=ks["positive"], negative=ks["negative"], cfg=ks["cfg"])
    out["21"] = _node(template["21"], noise_seed=ks["seed"])
    out["22"] = _node(template["22"], sampler_name=ks["sampler_name"])
    out["23"] = _node(template["23"], model=ks["model"], scheduler=ks["scheduler"], steps=ks["steps"],
                      denoise=ks["denoise"])
    out["24"] = _node(template["24"], latent_image=ks["latent_image"])
    return out


def with_second_reference(graph: dict) -> dict:
    """The graph with a second reference as workflows/api/vap_wan21_i2v_480p_two_references.json has
    it: that workflow's nodes 25-28 load, caption and encode it with the inputs of the first's (nodes 14,
    10, 20 and 15: the same frames, text encoder, fit), the encoder 28 chained after the first's 15, and
    what read 15's conditioning reads 28's."""
    for node, kind in (("10", "CLIPTextEncode"), ("14", "VAPLoadReferenceVideo"), ("15", "VAPEncodeReference"),
                       ("20", "CLIPTextEncode")):
        if graph.get(node, {}).get("class_type") != kind:
            raise WorkflowError(f"a second reference is loaded and encoded like the first, by copies of nodes 10, "
                                f"14, 15 and 20, and node {node} here is "
                                f"{graph.get(node, {}).get('class_type', 'missing')}, not {kind}")
    _check_free(graph, SECOND_REFERENCE_NODES, "a second reference")
    template, out = _template(TWO_REFERENCES_WORKFLOW), _rewired(graph, "15", "28")
    for node, like in (("25", "14"), ("26", "10"), ("27", "20"), ("28", "15")):
        out[node] = {**copy.deepcopy(template[node]), "inputs": copy.deepcopy(graph[like]["inputs"])}
    out["28"]["inputs"].update(positive=["15", 0], negative=["15", 1], reference=["25", 0],
                               reference_positive=["26", 0], reference_negative=["27", 0])
    return out


def _check_free(graph: dict, nodes: tuple, what: str):
    taken = [n for n in nodes if n in graph]
    if taken:
        raise WorkflowError(f"{what} adds nodes {nodes[0]}-{nodes[-1]}, and this workflow already has node(s) "
                            f"{', '.join(taken)}; renumber those in yours")


def _node(template: dict, **inputs) -> dict:
    node = copy.deepcopy(template)
    node["inputs"].update(inputs)
    return node


def _rewired(graph: dict, old: str, new: str) -> dict:
    """A copy where every input linked to an output of node `old` links to the same output of `new`."""
    out = copy.deepcopy(graph)
    for node in out.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] == old:
                node["inputs"][name] = [new, value[1]]
    return out
