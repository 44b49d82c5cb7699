"""python -m vap_core.export: expert-only files, their round trip, and the memory bound."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from devkit.checkpoints import Case, released_config, write_random_released, write_released
from vap_core import VAPTransformer, load_expert
from vap_core.export import export_expert
from vap_core.fingerprint import fingerprint_matches
from vap_core.keys import convert_released_name

ROOT = Path(__file__).resolve().parent.parent


def expert_tensors_of(case):
    """The case's expert tensors, renamed to the Wan layout the export writes."""
    converted = {k: convert_released_name(k) for k in case.released_weights()}
    return {c[1]: v for k, v in case.released_weights().items() if (c := converted[k]) and c[0] == "expert"}


def read_all(path):
    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def test_bf16_round_trip_is_exact(case_reflen, tmp_path):
    released = write_released(tmp_path / "r", case_reflen.released_weights(), case_reflen.config, shards=2)
    out = tmp_path / "expert.safetensors"
    export_expert(released, out, "bf16")
    meta, tensors = read_all(out)
    want = expert_tensors_of(case_reflen)
    assert set(tensors) == set(want)  # the unused reference head is not carried over
    assert all(torch.equal(tensors[k], want[k]) and tensors[k].dtype == torch.bfloat16 for k in want)
    assert json.loads(meta["layers"]) == case_reflen.config["block_idx_with_mot_ref"]
    cfg = json.loads(meta["config"])
    assert (cfg["dim"], cfg["num_heads"], cfg["num_layers"]) == (128, 2, 6)
    assert meta["source"] == "r" and meta["dtype"] == "bf16"
    assert not list(tmp_path.glob("*.partial"))


def test_fp8_stores_matrices_as_float8(case_comfy, tmp_path):
    released = write_released(tmp_path / "r", case_comfy.released_weights(), case_comfy.config)
    out = tmp_path / "expert_fp8.safetensors"
    export_expert(released, out, "fp8_e4m3fn")
    _, tensors = read_all(out)
    want = expert_tensors_of(case_comfy)
    for name, t in tensors.items():
        if name.endswith(".weight") and t.ndim == 2:
            assert t.dtype == torch.float8_e4m3fn, name
            assert torch.equal(t, want[name].float().to(torch.float8_e4m3fn))
        else:
            assert t.dtype == torch.bfloat16 and torch.equal(t, want[name]), name
    # an fp8 expert still gives the VAP output, within fp8's precision
    wan = tmp_path / "wan.safetensors"
    save_file(case_comfy.group("comfy_backbone"), str(wan))
    with torch.no_grad():
        out_fp8 = VAPTransformer.from_files(wan, out)(**case_comfy.inputs())
    ref, plain = case_comfy.tensors["out.vap"], case_comfy.tensors["out.backbone"]
    assert (out_fp8 - ref).abs().max() < 0.5 * (ref - plain).abs().max()


def test_fingerprint_recognises_its_backbone(case_small, case_comfy, released_small, tmp_path):
    out = tmp_path / "e.safetensors"
    export_expert(released_small, out)
    _, meta = load_expert(out)
    own = case_small.group("comfy_backbone")
    other = case_comfy.group("comfy_backbone")
    fp = meta["backbone_fingerprint"]
    assert fingerprint_matches(fp, own.__getitem__, 6, 128)
    # the same backbone stored in fp8 still matches: its modulation tables keep their precision
    assert fingerprint_matches(fp, lambda n: own[n].float(), 6, 128)
    assert not fingerprint_matches(fp, other.__getitem__, 6, 128)
    assert not fingerprint_matches(fp, own.__getitem__, 4, 128)


def test_cli_writes_file_and_shows_progress(released_small, tmp_path):
    out = tmp_path / "cli.safetensors"
    proc = subprocess.run([sys.executable, "-m", "vap_core.export", str(released_small), str(out), "--dtype", "fp16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "100%" in proc.stderr and "exporting expert" in proc.stderr
    _, tensors = read_all(out)
    assert {t.dtype for t in tensors.values()} == {torch.float16}


def test_cli_reports_bad_source_clearly(tmp_path):
    proc = run_cli(tmp_path / "nope", tmp_path / "o.safetensors")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vap_core.export", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dst, message", [
    ("modles/vap/e.safetensors", "the folder of DST {tmp}/modles/vap/e.safetensors ({tmp}/modles/vap) does not exist. "
                                 "Nothing was read."),
    (".", "DST {tmp} is a folder: name the file to write, e.g. {tmp}/vap_expert_bf16.safetensors"),
])
def test_cli_refuses_a_destination_it_cannot_write_before_reading(released_small, tmp_path, dst, message):
    proc = run_cli(released_small, tmp_path if dst == "." else tmp_path / dst)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert message.format(tmp=tmp_path) in proc.stderr
    assert "exporting expert" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_cli_refuses_a_destination_that_is_not_safetensors_or_inside_the_checkpoint(released_small, tmp_path):
    proc = run_cli(released_small, tmp_path / "new.pt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert (f"DST {tmp_path / 'new.pt'} must be a .safetensors file (the only format this pack writes or reads), e.g. "
            f"{tmp_path / 'new.safetensors'}. Nothing was read.") in proc.stderr
    weights = released_small / "transformer"
    before = sorted(p.name for p in weights.iterdir())
    for dst in (weights / "copy.safetensors", weights / "diffusion_pytorch_model.safetensors"):  # the latter: its own weights
        proc = run_cli(released_small, dst)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"DST {dst} is inside the checkpoint it exports from ({weights.resolve()}); nothing was written" in proc.stderr
    assert sorted(p.name for p in weights.iterdir()) == before and list(tmp_path.iterdir()) == []
    assert VAPTransformer.from_checkpoint(released_small) is not None  # still readable: nothing was overwritten


def test_cli_refuses_an_exported_expert_as_source(released_small, tmp_path):
    expert = tmp_path / "e.safetensors"
    export_expert(released_small, expert)
    proc = run_cli(expert, tmp_path / "again.safetensors")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"SRC {expert} is already an exported expert file (layers [0, 2, 5], bf16, from " in proc.stderr
    assert "use it directly in models/vap" in proc.stderr and not (tmp_path / "again.safetensors").exists()


def test_cli_reports_a_config_of_wrong_shape(case_small, tmp_path):
    folder = write_released(tmp_path / "r", case_small.released_weights(), [])
    proc = run_cli(folder, tmp_path / "e.safetensors")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{folder / 'transformer' / 'config.json'} holds a JSON list" in proc.stderr


# VmHWM is the peak RSS of this process's own memory; ru_maxrss would include the parent's peak
# inherited across fork, which under pytest exceeds everything measured here.
PEAK_SCRIPT = """
{body}
print("PEAK_KB", [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""


def peak_rss_kb(body: str) -> int:
    proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT.format(body=body)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split("PEAK_KB")[1].split()[0])


def cog_config(case) -> dict:
    """A CogVideoX checkpoint's config: the case's sizes, 12 heads and 12 layers, one of them with an expert."""
    return case.checkpoint_config(num_attention_heads=12, num_layers=12, time_embed_dim=256, text_embed_dim=256,
                                  block_idx_with_mot_ref=[0])


@pytest.mark.parametrize("family", ["wan", "cog"])
def test_export_memory_stays_below_twice_the_expert(tmp_path, family):
    """On a checkpoint whose backbone is several times the expert, the export's peak RSS stays
    below the bare interpreter's plus twice the expert's bf16 size (Wan 2.1 and CogVideoX alike)."""
    config = cog_config(Case("cog_small")) if family == "cog" else released_config(
        heads=8, ffn_dim=4096, num_layers=16, expert_layers=[0, 8], text_dim=256, image_dim=256, added_kv_proj_dim=1024)
    sizes = write_random_released(tmp_path / "big", config, shards=3)
    assert sizes["backbone_bytes"] > 5 * sizes["expert_bytes"]
    out = tmp_path / "expert.safetensors"
    bare = peak_rss_kb("import vap_core.export")
    peak = peak_rss_kb(f"from vap_core.export import main; main([{str(tmp_path / 'big')!r}, {str(out)!r}, '--dtype', 'fp32'])")
    extra = (peak - bare) * 1024
    print(f"\n{family} export peak RSS: bare {bare / 1024:.0f} MiB, export {peak / 1024:.0f} MiB, extra "
          f"{extra / 2**20:.0f} MiB; expert {sizes['expert_bytes'] / 2**20:.0f} MiB bf16, backbone "
          f"{sizes['backbone_bytes'] / 2**20:.0f} MiB")
    assert extra < 2 * sizes["expert_bytes"]
    assert out.stat().st_size > 2 * sizes["expert_bytes"]  # fp32: the whole expert was written
