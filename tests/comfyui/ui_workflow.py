"""The UI-format workflow (what the ComfyUI front end opens) made from the API-format one, using a
server's /object_info for input order, widget values and output types.

    python tests/comfyui/ui_workflow.py      # rewrites workflows/vap_wan21_i2v_480p.json
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import harness

UI_WORKFLOW = harness.ROOT / "workflows" / "vap_wan21_i2v_480p.json"
_UPLOAD_KEYS = ("image_upload", "video_upload", "animated_image_upload")


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _depths(api: dict) -> dict:
    depth = {}

    def visit(node_id):
        if node_id not in depth:
            parents = [v[0] for v in api[node_id]["inputs"].values() if _is_link(v)]
            depth[node_id] = 1 + max((visit(p) for p in parents), default=-1)
        return depth[node_id]
    for node_id in api:
        visit(node_id)
    return depth


def api_to_ui(api: dict, object_info: dict) -> dict:
    depth = _depths(api)
    order = sorted(api, key=lambda k: (depth[k], int(k)))
    rows = {}
    links, nodes = [], []
    outputs = {k: [[] for _ in object_info[api[k]["class_type"]]["output"]] for k in api}
    for node_id in order:
        node = api[node_id]
        info = object_info[node["class_type"]]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        names = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        inputs, widgets = [], []
        for name in names:
            if name not in node["inputs"]:
                continue
            value, spec = node["inputs"][name], specs[name]
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            if _is_link(value):
                link_id = len(links) + 1
                src, slot = value
                links.append([link_id, int(src), slot, int(node_id), len(inputs), kind])
                outputs[src][slot].append(link_id)
                inputs.append({"name": name, "type": kind, "link": link_id})
            else:
                widgets.append(value)
                extra = spec[1] if len(spec) > 1 else {}
                if extra.get("control_after_generate"):
                    widgets.append("fixed")
                if any(extra.get(k) for k in _UPLOAD_KEYS):
                    widgets.append("image")
        column = depth[node_id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append({"id": int(node_id), "type": node["class_type"], "title": node.get("_meta", {}).get("title"),
                      "pos": [40 + 380 * column, 40 + 260 * row], "size": [340, 200], "flags": {},
                      "order": order.index(node_id), "mode": 0, "inputs": inputs, "outputs": [],
                      "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets})
    for entry in nodes:
        info = object_info[entry["type"]]
        entry["outputs"] = [{"name": name, "type": kind, "links": outputs[str(entry["id"])][slot], "slot_index": slot}
                            for slot, (name, kind) in enumerate(zip(info["output_name"], info["output"]))]
    return {"last_node_id": max(int(k) for k in api), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


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
            info = server.get("/object_info")
        finally:
            server.stop()
    ui = api_to_ui(json.loads(harness.API_WORKFLOW.read_text()), info)
    UI_WORKFLOW.write_text(json.dumps(ui, indent=2) + "\n")
    print(f"wrote {UI_WORKFLOW}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
