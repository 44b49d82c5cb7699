"""vap_core against the golden outputs of the oracle (the paper's code)."""
import pytest
import torch
from safetensors.torch import save_file

from devkit.checkpoints import CASES, Case, write_released
from vap_core import VAPTransformer
from vap_core.export import export_expert

TOL = 1e-4  # float32, max abs (the oracle's README)


def max_err(a, b):
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("shards", [1, 3])
def test_released_checkpoint_matches_reference(name, shards, tmp_path):
    case = Case(name)
    model = VAPTransformer.from_checkpoint(
        write_released(tmp_path, case.released_weights(), case.config, shards=shards), dtype=torch.float32)
    with torch.no_grad():
        vap = model(**case.inputs())
        plain = model(**case.inputs(with_reference=False))
    assert max_err(vap, case.tensors["out.vap"]) <= TOL
    assert max_err(plain, case.tensors["out.backbone"]) <= TOL
    # the expert really acts: its effect is far above the tolerance
    assert max_err(vap, plain) > 100 * TOL


def test_rope_delta_zero_matches_unshifted_reference(case_small, released_small):
    model = VAPTransformer.from_checkpoint(released_small)
    with torch.no_grad():
        unbiased = model(**case_small.inputs(), rope_delta=0)
        default = model(**case_small.inputs(), rope_delta=None)
        explicit = model(**case_small.inputs(), rope_delta=case_small.tensors["in.ref_x"].shape[2])
    assert max_err(unbiased, case_small.tensors["out.vap_delta0"]) <= TOL
    assert max_err(default, explicit) == 0.0
    assert max_err(unbiased, default) > 10 * TOL


def test_checkpoint_path_forms(case_small, released_small):
    """The folder above transformer/, transformer/ itself, and the weights file all load."""
    tdir = released_small / "transformer"
    ref = case_small.tensors["out.vap"]
    for path in (released_small, tdir, tdir / "diffusion_pytorch_model.safetensors"):
        with torch.no_grad():
            assert max_err(VAPTransformer.from_checkpoint(path)(**case_small.inputs()), ref) <= TOL


# bf16 compute (bf16 weights and activations; LayerNorms and modulation in float32) against the
# float32 reference. Stated tolerance: max abs error 3e-2 (outputs reach ~2.4), RMS error under 1%
# of the output's RMS, and under half of the expert's own RMS effect (measured: 0.7%, 0.21-0.34).
BF16_MAX_ABS = 3e-2
BF16_RMS_OF_OUTPUT = 0.01
BF16_RMS_OF_EFFECT = 0.5


@pytest.mark.parametrize("name", CASES)
def test_bf16_within_stated_tolerance(name, tmp_path):
    case = Case(name)
    model = VAPTransformer.from_checkpoint(write_released(tmp_path, case.released_weights(), case.config),
                                           dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(**case.inputs()).float()
    assert out.dtype == torch.float32 and model.dtype == torch.bfloat16
    ref, plain = case.tensors["out.vap"], case.tensors["out.backbone"]
    assert max_err(out, ref) <= BF16_MAX_ABS
    rms = lambda d: d.pow(2).mean().sqrt().item()  # noqa: E731
    assert rms(out - ref) <= BF16_RMS_OF_OUTPUT * rms(ref)
    assert rms(out - ref) <= BF16_RMS_OF_EFFECT * rms(ref - plain)


@pytest.mark.parametrize("name", ["case_small", "case_comfy"])
def test_comfy_backbone_file_plus_exported_expert(name, tmp_path):
    """The ComfyUI-layout Wan file paired with the pack's expert file gives the same model."""
    case = Case(name)
    released = write_released(tmp_path / "released", case.released_weights(), case.config)
    expert = tmp_path / "expert.safetensors"
    export_expert(released, expert, "fp32")
    wan = tmp_path / "wan.safetensors"
    save_file({f"model.diffusion_model.{k}": v for k, v in case.group("comfy_backbone").items()}, str(wan))
    model = VAPTransformer.from_files(wan, expert)
    with torch.no_grad():
        assert max_err(model(**case.inputs()), case.tensors["out.vap"]) <= TOL
        assert max_err(model(**case.inputs(with_reference=False)), case.tensors["out.backbone"]) <= TOL


def test_a_reference_embedded_once_serves_every_step(case_small, released_small):
    """embed_reference once, then `reference=` at each call: the same output as passing ref_x."""
    model = VAPTransformer.from_checkpoint(released_small)
    inputs = case_small.inputs()
    ref = {k: inputs.pop(k) for k in ("ref_x", "ref_context", "ref_clip_fea")}
    with torch.no_grad():
        reference = model.embed_reference(**ref, batch=inputs["x"].shape[0])
        first = model(**inputs, reference=reference)
        again = model(**inputs, reference=reference)
    assert max_err(first, case_small.tensors["out.vap"]) <= TOL
    assert max_err(first, again) == 0.0
