"""Stock TorchCompileModel with the expert applied, inside the real ComfyUI (tests/comfyui/compile_in_comfy.py):
after the first step of the first run, sampling compiles nothing more, and the pack's code breaks no graph."""
from __future__ import annotations

from tests.helpers import in_comfy


def test_sampling_with_the_expert_compiles_once(comfy):
    result = in_comfy(comfy, "tests.comfyui.compile_in_comfy")
    first, second = result["frames_compiled_per_step"]
    assert first[0] > 0  # dynamo compiled the model at the first step: the count counts
    assert first[1:] == [0] * (len(first) - 1) and second == [0] * len(second), (result["frames_compiled_per_step"],
                                                                                 result["recompiles"])
    pack = [site for site in result["graph_break_sites"] if site.startswith(("nodes/", "vap_core/"))]
    assert pack == [], pack
    # compiled (dynamo's eager backend) computes what the plain model does, the expert on for all or half the steps,
    # and TorchCompileModel placed before Apply VAP Expert what it does after it
    differences = result["differences"]
    assert max(differences["full"]) <= 1e-5 and differences["first_half"] <= 1e-5, differences
    assert differences["compiled_before_apply"] <= 1e-5, differences
    assert result["differences"]["expert_effect"] > 1e-3
