"""The two moments a cancel is timed at, over HTTP on a server with the tiny models: while VAP Load
Reference Video reads a long 1080p clip, and while KSampler samples with the expert (for
Server.interrupt_during; the benchmark prints the times, a test checks that the run stops)."""
from __future__ import annotations

from pathlib import Path

from devkit.clips import write_test_pattern
from devkit.comfy_server import tiny_workflow
from vap_core.whole_file import write_whole

READER, SAMPLER, SAVER = "14", "16", "19"  # the node IDs in the shipped workflow
LONG_REFERENCE = "vap_cancel_reference_1080p.mp4"


def write_long_reference(base: Path, seconds: int) -> str:
    """A 1080p30 clip in the base directory's input folder (once), encoded with x264's ultrafast preset, whose
    every frame is a reference: reading frames spread over it decodes every frame up to the last."""
    path = base / "input" / LONG_REFERENCE.replace(".mp4", f"_{seconds}s.mp4")
    if not path.exists():
        write_whole(path, lambda partial: write_test_pattern(partial, seconds, options={"preset": "ultrafast"}))
    return path.name


def phases(reference: str, seed: int) -> dict:
    """phase -> (graph, the node whose progress starts the cancel, at which of its progress reports): the
    reader at its first kept frame; the sampler at its second step (so that the step before is timed too).
    `seed` makes each run new to ComfyUI's cache."""
    return {
        "reading the reference": (tiny_workflow(changes={("VAPLoadReferenceVideo", "video"): reference,
                                                         ("VAPLoadReferenceVideo", "seed"): seed}), READER, 1),
        # euler: the workflow's multistep sampler fails on 1000 tiny steps (a singular solve)
        "sampling with the expert": (tiny_workflow(steps=1000, changes={("KSampler", "seed"): seed,
                                                                        ("KSampler", "sampler_name"): "euler"}), SAMPLER, 2),
    }
