"""Filling the pack's API workflow with one job's values, by node ID and input name."""
from __future__ import annotations

import copy
import json
from pathlib import Path

DEFAULT_WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "api" / "vap_wan21_i2v_480p.json"
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


class WorkflowError(ValueError):
    """The workflow lacks a node or input the batch runner fills."""


def load_workflow(path=DEFAULT_WORKFLOW) -> dict:
    path = Path(path)
    try:
        graph = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WorkflowError(f"cannot read the API workflow {path}: {err}") from None
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise WorkflowError(f"{path} is not an API-format workflow (export it with 'Export (API)' in ComfyUI).")
    missing = [f"node {node} input '{name}' (for {field})" for field, targets in FIELDS.items()
               for node, name in targets if name not in graph.get(node, {}).get("inputs", {})]
    if missing:
        raise WorkflowError(f"{path} lacks what the batch runner fills: {'; '.join(missing)}. Use the pack's "
                            "workflows/api/vap_wan21_i2v_480p.json, or keep its node IDs in yours.")
    return graph


def fill(graph: dict, values: dict) -> dict:
    """A copy of the workflow with each given field's inputs set."""
    out = copy.deepcopy(graph)
    for field, value in values.items():
        for node, name in FIELDS[field]:
            out[node]["inputs"][name] = value
    return out
