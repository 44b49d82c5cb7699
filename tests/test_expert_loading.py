"""Reading the expert (or the backbone) out of a released checkpoint, as the ComfyUI loaders do."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from devkit.checkpoints import Case, write_released
from vap_core.errors import NotACheckpointError
from vap_core.expert import load_expert
from vap_core.export import export_expert
from vap_core.released import read_released


@pytest.fixture(scope="module")
def comfy_released(tmp_path_factory):
    case = Case("case_comfy")
    folder = write_released(tmp_path_factory.mktemp("released") / "vap", case.released_weights(), case.config, shards=2)
    return case, folder


def test_expert_from_the_released_checkpoint_equals_the_exported_file(comfy_released, tmp_path):
    _, folder = comfy_released
    export_expert(folder, tmp_path / "expert.safetensors", "fp32")
    index = folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
    from_release, meta = load_expert(index)
    from_file, file_meta = load_expert(tmp_path / "expert.safetensors")
    a, b = from_release.state_dict(), from_file.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert meta["backbone_fingerprint"] == file_meta["backbone_fingerprint"]
    assert meta["layers"] == file_meta["layers"]


def test_fp8_storage_keeps_vectors_in_bf16_and_norms_in_fp32(comfy_released):
    _, folder = comfy_released
    expert, _ = load_expert(folder, torch.float8_e4m3fn)
    block = expert.blocks["0"]
    assert block.self_attn.q.weight.dtype == torch.float8_e4m3fn
    assert block.self_attn.q.bias.dtype == torch.bfloat16
    assert block.norm3.weight.dtype == torch.float32 and block.modulation.dtype == torch.float32
    assert expert.patch_embedding.weight.dtype == torch.bfloat16  # 5-D: not a matrix


def test_backbone_tensors_are_comfyuis_wan_layout(comfy_released):
    case, folder = comfy_released
    tensors = read_released(folder).backbone_tensors()
    want = case.group("comfy_backbone")
    assert tensors.keys() == want.keys()
    assert all(torch.equal(tensors[k], want[k]) for k in want)


def test_a_wan_model_is_not_an_expert(tmp_path):
    path = tmp_path / "wan.safetensors"
    save_file({k: v.contiguous() for k, v in Case("case_comfy").group("comfy_backbone").items()}, str(path))
    with pytest.raises(NotACheckpointError, match="not a VAP expert.*Load Diffusion Model"):
        load_expert(path)


def test_every_source_opens_each_file_once(comfy_released, tmp_path, monkeypatch):
    import vap_core.checkpoint as checkpoint
    _, folder = comfy_released
    export_expert(folder, tmp_path / "expert.safetensors", "bf16")
    single = write_released(tmp_path / "single", Case("case_comfy").released_weights(), Case("case_comfy").config)
    index = folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
    opened = []
    original = checkpoint.open_safetensors
    monkeypatch.setattr(checkpoint, "open_safetensors", lambda path: opened.append(str(path)) or original(path))
    for source, files in ((tmp_path / "expert.safetensors", 1), (next((single / "transformer").glob("*.safetensors")), 1),
                          (index, 2), (read_released(index), 0)):  # a Released already has its files open
        opened.clear()
        load_expert(source)
        assert len(opened) == len(set(opened)) == files, (source, opened)
