"""Cancel, timed over HTTP: how long the real ComfyUI server with the pack takes to stop a VAP run after
POST /interrupt, while VAP Load Reference Video reads a long 1080p clip and while KSampler samples with
the expert (tiny models, CPU). Each run is new to ComfyUI's cache (its own seed). Run by
`python -m benchmarks --only cancel`."""
from __future__ import annotations

import statistics
from pathlib import Path

from devkit import cancel
from devkit import comfy_server as harness

CLIP_SECONDS = 20  # 600 frames at 1080p: seconds of decoding, on a CPU, for the frames spread over it


def run(root: Path, python: str, base: Path, repeats: int) -> list[dict]:
    """One row per phase: the seconds from /interrupt to execution_interrupted over `repeats` runs, and the
    time of one step of what was interrupted (a kept frame read, a sampling step), for scale."""
    reference = cancel.write_long_reference(base, CLIP_SECONDS)
    server = harness.Server(root, python, base)
    try:
        server.run(harness.tiny_workflow())  # loads the models: the runs timed start warm
        runs: dict[str, list[dict]] = {}
        for seed in range(1, repeats + 1):
            for phase, (graph, node, at) in cancel.phases(reference, seed).items():
                runs.setdefault(phase, []).append(server.interrupt_during(graph, node, at) | {"expected": node})
    finally:
        server.stop()
    rows = []
    for phase, results in runs.items():
        stops = [r["seconds"] for r in results]
        steps = [r["step_seconds"] for r in results if r["step_seconds"] is not None]
        rows.append({"phase": phase, "runs": len(results), "median_s": statistics.median(stops), "max_s": max(stops),
                     "step_s": statistics.median(steps) if steps else None,
                     "stopped_in": sorted({r["node"] for r in results}), "expected": results[0]["expected"]})
    return rows
