"""Every bad file and bad input gets its own clear error."""
import dataclasses
import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from devkit.checkpoints import write_released
from vap_core import (CheckpointMismatchError, CorruptCheckpointError, IncompatibleExpertError, InputError,
                      MissingShardError, NotACheckpointError, VAPTransformer, load_expert)
from vap_core.expert import VAPExpert
from vap_core.export import export_expert


def plain_wan(case):
    """The case's backbone alone, as a released-layout (diffusers) Wan 2.1 I2V checkpoint."""
    tensors = {k: v for k, v in case.released_weights().items() if "_mot_ref" not in k}
    config = {k: v for k, v in case.config.items() if k != "block_idx_with_mot_ref"}
    return tensors, config


# --- files that are not a VAP checkpoint -------------------------------------------------------

def test_plain_wan_checkpoint_is_refused(case_small, tmp_path):
    folder = write_released(tmp_path, *plain_wan(case_small))
    with pytest.raises(NotACheckpointError, match="plain Wan"):
        VAPTransformer.from_checkpoint(folder)
    with pytest.raises(NotACheckpointError, match="no Video-As-Prompt expert"):
        export_expert(folder, tmp_path / "e.safetensors")


def test_text_to_video_config_is_refused(case_small, tmp_path):
    config = dict(case_small.config, image_dim=None)
    with pytest.raises(NotACheckpointError, match="text-to-video"):
        VAPTransformer.from_checkpoint(write_released(tmp_path, case_small.released_weights(), config))


def test_file_without_config_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(2)}, str(path))
    with pytest.raises(NotACheckpointError, match="config.json"):
        VAPTransformer.from_checkpoint(path)


def test_folder_without_weights_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NotACheckpointError, match="not a released VAP checkpoint"):
        VAPTransformer.from_checkpoint(tmp_path)


class _Bomb:
    def __reduce__(self):
        return (open, (str(BOMB_MARKER), "w"))


BOMB_MARKER = None


def test_pickle_is_never_loaded(tmp_path):
    global BOMB_MARKER
    BOMB_MARKER = tmp_path / "unpickled"
    bad = tmp_path / "transformer" / "diffusion_pytorch_model.bin"
    bad.parent.mkdir()
    bad.write_bytes(pickle.dumps(_Bomb()))
    for path in (bad, tmp_path):
        with pytest.raises(NotACheckpointError, match="pickle"):
            VAPTransformer.from_checkpoint(path)
    with pytest.raises(NotACheckpointError, match="pickle"):
        load_expert(bad)
    assert not BOMB_MARKER.exists()


@pytest.mark.parametrize("fmt", ["pickle", "torch.save zip", "torch.save legacy"])
def test_pickle_named_safetensors_is_recognised_and_never_loaded(case_small, tmp_path, fmt):
    global BOMB_MARKER
    BOMB_MARKER = tmp_path / "unpickled"
    folder = write_released(tmp_path, {}, case_small.config)
    bad = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    if fmt == "pickle":
        bad.write_bytes(pickle.dumps(_Bomb()))
    else:
        torch.save({"w": torch.zeros(2), "x": _Bomb()}, bad, _use_new_zipfile_serialization=fmt.endswith("zip"))
    for load in (VAPTransformer.from_checkpoint, load_expert):
        with pytest.raises(NotACheckpointError, match="is a pickle-format file .*; it was never loaded"):
            load(bad)
    assert not BOMB_MARKER.exists()


def test_unknown_tensor_in_checkpoint(case_small, tmp_path):
    tensors = dict(case_small.released_weights(), **{"blocks.0.attn1.extra.weight": torch.zeros(2)})
    with pytest.raises(CheckpointMismatchError, match="blocks.0.attn1.extra.weight"):
        VAPTransformer.from_checkpoint(write_released(tmp_path, tensors, case_small.config))


def test_missing_tensor_in_checkpoint(case_small, tmp_path):
    tensors = {k: v for k, v in case_small.released_weights().items() if k != "blocks.2.ffn_mot_ref.net.2.bias"}
    with pytest.raises(CheckpointMismatchError, match=r"1 missing .*blocks\.2\.ffn\.2\.bias"):
        VAPTransformer.from_checkpoint(write_released(tmp_path, tensors, case_small.config))
    with pytest.raises(CheckpointMismatchError, match="missing"):
        export_expert(tmp_path, tmp_path / "e.safetensors")


def test_wrongly_shaped_tensor(case_small, tmp_path):
    tensors = dict(case_small.released_weights())
    tensors["blocks.0.attn1_mot_ref.to_q.weight"] = torch.zeros(128, 64, dtype=torch.bfloat16)
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.0\.self_attn\.q\.weight has shape \(128, 64\)"):
        VAPTransformer.from_checkpoint(write_released(tmp_path, tensors, case_small.config))


def test_expert_file_check(case_small, tmp_path):
    wan = tmp_path / "wan.safetensors"
    save_file(case_small.group("comfy_backbone"), str(wan))
    with pytest.raises(NotACheckpointError, match="is not a VAP expert: .*it is a Wan diffusion model"):
        load_expert(wan)
    other = tmp_path / "other.safetensors"
    save_file({"a": torch.zeros(2)}, str(other))
    with pytest.raises(NotACheckpointError, match="not a Wan 2.1 image-to-video"):
        VAPTransformer.from_files(other)


# --- missing, truncated and damaged files ------------------------------------------------------

def test_missing_shard(case_small, tmp_path):
    folder = write_released(tmp_path, case_small.released_weights(), case_small.config, shards=3)
    (folder / "transformer" / "diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    with pytest.raises(MissingShardError, match="00002-of-00003"):
        VAPTransformer.from_checkpoint(folder)
    with pytest.raises(MissingShardError):
        export_expert(folder, tmp_path / "e.safetensors")


@pytest.mark.parametrize("shard", ["../../outside.safetensors", "/etc/hostname", "sub/../../x.safetensors",
                                   "escape.safetensors", "shard.bin"])
def test_shards_outside_the_index_folder_are_refused_before_any_file_is_opened(case_small, tmp_path, shard, monkeypatch):
    import json

    from vap_core import checkpoint
    folder = write_released(tmp_path / "ckpt", case_small.released_weights(), case_small.config, shards=2)
    (tmp_path / "outside.safetensors").write_bytes(b"")
    index = folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
    (folder / "transformer" / "escape.safetensors").symlink_to(tmp_path / "outside.safetensors")
    data = json.loads(index.read_text())
    data["weight_map"][next(iter(data["weight_map"]))] = shard
    index.write_text(json.dumps(data))
    opened = []
    monkeypatch.setattr(checkpoint, "safe_open", lambda *a, **k: opened.append(a) or pytest.fail("a file was opened"))
    with pytest.raises(NotACheckpointError, match="shards must be .safetensors files in the index's own folder"):
        VAPTransformer.from_checkpoint(folder)
    assert opened == []


def test_missing_path(tmp_path):
    with pytest.raises(MissingShardError, match="does not exist"):
        VAPTransformer.from_checkpoint(tmp_path / "nowhere")
    with pytest.raises(MissingShardError, match="does not exist"):
        load_expert(tmp_path / "nowhere.safetensors")


def test_truncated_and_damaged_files(case_small, released_small, tmp_path):
    folder = write_released(tmp_path / "t", case_small.released_weights(), case_small.config)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        VAPTransformer.from_checkpoint(folder)
    weights.write_bytes(b"\x00" * 64 + data[64:])
    with pytest.raises(CorruptCheckpointError):
        VAPTransformer.from_checkpoint(folder)
    expert = tmp_path / "e.safetensors"
    export_expert(released_small, expert)
    expert.write_bytes(expert.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError):
        load_expert(expert)


def test_header_that_claims_more_than_the_file_holds_is_refused_before_mapping(tmp_path, monkeypatch):
    from vap_core import checkpoint
    header = json.dumps({"w": {"dtype": "BF16", "shape": [17_000_000_000], "data_offsets": [0, 34_000_000_000]}})
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(64))
    monkeypatch.setattr(checkpoint, "safe_open", lambda *a, **k: pytest.fail("the file was mapped"))
    with pytest.raises(CorruptCheckpointError,
                       match="its header says it holds 34000000000 bytes of tensors, but the file holds only 64"):
        load_expert(path)


@pytest.mark.parametrize("config, message", [
    ([], r"config\.json holds a JSON list, not the object"),
    ({"block_idx_with_mot_ref": ["a"]}, r"config\.json: block_idx_with_mot_ref is \['a'\]; it must be a list"),
    ({"block_idx_with_mot_ref": 3}, r"config\.json: block_idx_with_mot_ref is 3; it must be a list"),
    ({"block_idx_with_mot_ref": [0, 0, 2]}, r"config\.json: block_idx_with_mot_ref is \[0, 0, 2\]; .* distinct"),
    ({"num_layers": "6"}, r"config\.json: num_layers is '6'; it must be a positive integer"),
    ({"attention_head_dim": 64.5}, r"config\.json: attention_head_dim is 64\.5; it must be a positive integer"),
    ({"patch_size": 2}, r"config\.json: patch_size is 2; it must be a list of 3 positive integers"),
    ({"eps": "1e-6"}, r"config\.json: eps is '1e-6'; it must be a positive number"),
])
def test_config_of_wrong_shape_names_the_file_and_the_field(case_small, tmp_path, config, message):
    config = dict(case_small.config, **config) if isinstance(config, dict) else config
    folder = write_released(tmp_path, case_small.released_weights(), config)
    with pytest.raises(CorruptCheckpointError, match=message):
        VAPTransformer.from_checkpoint(folder)


def test_damaged_config(case_small, tmp_path):
    folder = write_released(tmp_path, case_small.released_weights(), case_small.config)
    (folder / "transformer" / "config.json").write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="not valid JSON"):
        VAPTransformer.from_checkpoint(folder)


# --- experts that do not fit the backbone -------------------------------------------------------

def test_expert_of_other_width_or_heads(case_small, case_comfy, released_small, tmp_path):
    expert = tmp_path / "small_expert.safetensors"
    export_expert(released_small, expert)
    wan = tmp_path / "comfy_wan.safetensors"
    save_file(case_comfy.group("comfy_backbone"), str(wan))  # 4 layers, 1 head, text width 4096
    with pytest.raises(IncompatibleExpertError, match="text width 32 vs the backbone's 4096"):
        VAPTransformer.from_files(wan, expert)


def test_expert_layers_beyond_backbone(case_small, tmp_path):
    config = dict(case_small.config, block_idx_with_mot_ref=[0, 2, 9])
    tensors = {k.replace("blocks.5.", "blocks.9.") if "_mot_ref" in k else k: v
               for k, v in case_small.released_weights().items()}
    with pytest.raises(IncompatibleExpertError, match=r"expert layers \[9\] beyond the backbone's 6 layers"):
        VAPTransformer.from_checkpoint(write_released(tmp_path, tensors, config))


@pytest.mark.parametrize("layers, message", [
    ([0, 2, 99], r"block_idx_with_mot_ref lists layer\(s\) \[99\] that the weights hold no expert tensors for"),
    ([0, 2], r"block_idx_with_mot_ref leaves out layer\(s\) \[5\] that the weights hold expert tensors for"),
])
def test_a_config_whose_expert_layers_the_weights_do_not_hold_is_named_as_damaged(case_small, tmp_path, layers, message):
    folder = write_released(tmp_path, case_small.released_weights(), dict(case_small.config, block_idx_with_mot_ref=layers))
    with pytest.raises(CorruptCheckpointError, match=rf"transformer/config.json does not match the weights beside it: "
                                                     rf"{message}\. The config.json is damaged or from another checkpoint"):
        VAPTransformer.from_checkpoint(folder)


def test_an_index_that_is_not_json_says_what_to_do(case_small, tmp_path):
    folder = write_released(tmp_path, case_small.released_weights(), case_small.config, shards=2)
    index = next((folder / "transformer").glob("*.index.json"))
    index.write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match=r"is not a safetensors index .*: it is damaged or not the "
                                                     r"checkpoint's index json\. Download it again"):
        VAPTransformer.from_checkpoint(index)


def test_check_fits_reports_each_mismatch(model):
    cfg = model.cfg
    expert = VAPExpert(cfg, [0, 2, 5], device="meta")
    expert.check_fits(cfg)
    for change, words in (({"dim": 256}, "width"), ({"num_heads": 1}, "heads"),
                          ({"num_layers": 4}, "beyond"), ({"image_dim": 1280}, "CLIP width")):
        with pytest.raises(IncompatibleExpertError, match=words):
            expert.check_fits(dataclasses.replace(cfg, **change))


# --- bad model inputs ---------------------------------------------------------------------------

def test_bad_inputs(model, case_small):
    good = case_small.inputs()

    def call(**changes):
        with torch.no_grad():
            return model(**dict(good, **changes))

    x, ctx, clip = good["x"], good["context"], good["clip_fea"]
    cases = [
        (dict(x=x[:, :16]), "expected \\(batch, 36"),
        (dict(x=x[0]), "expected \\(batch, 36"),
        (dict(x=x[..., :5]), "multiples of the patch size"),
        (dict(context=ctx[..., :16]), "context has shape"),
        (dict(context=ctx[:1]), "context has shape"),
        (dict(context=torch.zeros(2, 513, 32)), "at most 512"),
        (dict(clip_fea=clip[..., :8]), "clip_fea has shape"),
        (dict(ref_x=good["ref_x"][:, :, :, :4]), "encode it at the video.s width and height"),
        (dict(ref_x=good["ref_x"][:, :20]), "ref_x has shape"),
        (dict(ref_x=torch.cat([good["ref_x"]] * 2)[:3]), "batch 3; expected 1 or 2"),
        (dict(ref_context=None), "needs ref_context"),
        (dict(t=torch.tensor([500.0, 500.0, 500.0])), "t has 3 values"),
        (dict(ref_t=torch.tensor([1.0, 1.0, 1.0])), "ref_t has 3 values"),
        (dict(ref_context=good["ref_context"][..., :4]), "ref_context has shape"),
    ]
    for changes, message in cases:
        with pytest.raises(InputError, match=message):
            call(**changes)


def test_reference_batch_one_is_broadcast(model, case_small):
    good = case_small.inputs()
    with torch.no_grad():
        full = model(**good)
        single = model(**dict(good, ref_x=good["ref_x"][:1], ref_clip_fea=good["ref_clip_fea"][:1]))
    assert torch.allclose(full, single, atol=1e-6)


def test_reference_without_expert(case_small, tmp_path):
    wan = tmp_path / "wan.safetensors"
    save_file(case_small.group("comfy_backbone"), str(wan))
    plain = VAPTransformer.from_files(wan)  # dim 128 -> one head by ComfyUI's rule; fine for plain use
    with pytest.raises(InputError, match="no expert"):
        plain(**case_small.inputs())
