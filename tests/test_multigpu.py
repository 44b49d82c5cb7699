"""ComfyUI 0.33's "MultiGPU CFG Split" with the expert, inside the real ComfyUI on the CPU with a second device
faked in ComfyUI's device list (tests/comfyui/multigpu_in_comfy.py). Not run on two GPUs."""
from __future__ import annotations

import pytest

from tests.helpers import in_comfy
from devkit import comfy_server as harness


@pytest.fixture(scope="module")
def split(comfy):
    if harness.comfy_version(comfy[0]) < (0, 33):
        pytest.skip("ComfyUI's multi-GPU split came with 0.33: set COMFYUI_PATH to a ComfyUI 0.33")
    return in_comfy(comfy, "tests.comfyui.multigpu_in_comfy")


@pytest.mark.parametrize("place", ["after", "before", "after, released checkpoint", "after, reference guidance"])
def test_each_device_runs_its_own_copy_of_the_expert(split, place):
    """Placed after or before Apply VAP Expert: one clone for the second device, with a Wan model and an expert of
    its own there; the thread of each device runs its own Wan model and its own expert, nothing else. With VAP
    Reference Guider ComfyUI gives the first device the two rows with the reference (cond and uncond, batched) and
    the second the row without it, which runs no expert."""
    result = split[place]
    assert result["clones"] == [{"load_device": "cpu:1", "is_multigpu_base_clone": True, "wan_is_main": False}]
    assert result["experts"] == {"main": [{"load_device": "cpu", "is_main": True}],
                                 "clone0": [{"load_device": "cpu:1", "is_main": False}]}
    clone_thread = ["wan of clone0"] if "guidance" in place else ["expert of clone0", "wan of clone0"]
    assert sorted(result["threads"]) == sorted([clone_thread, ["expert of main", "wan of main"]])


@pytest.mark.parametrize("place", ["after", "before", "after, released checkpoint", "after, reference guidance"])
def test_the_split_samples_what_one_device_does(split, place):
    # one device batches cond and uncond in one call, the split runs them apart: float32 rounding only
    assert split[place]["difference_from_one_device"] <= 1e-4


@pytest.mark.parametrize("place", ["Select Model Device before", "Select Model Device after"])
def test_select_model_device_gives_the_expert_a_copy_on_that_device(split, place):
    """Select Model Device gpu:1, before or after Apply VAP Expert: the expert is a copy of its own on that device
    (ComfyUI loads each model on its load device: an expert left on the first would cross devices in every layer).
    With the faked device, CPU-typed, Select Model Device takes its CPU path, which changes only the model's device
    (as its `cpu` choice does on a GPU machine): the copy is the pack's."""
    result = split[place]
    assert result["load_device"] == "cpu:1" and result["clones"] == []
    assert result["experts"] == {"main": [{"load_device": "cpu:1", "is_main": False}]}
    assert result["threads"] == [["expert of main", "wan of main"]]
    assert result["difference_from_one_device"] <= 1e-4
