"""The released VAP checkpoint (diffusers layout): where its files are, and which of its tensors are backbone and
which expert."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from . import cog_keys, keys
from .backbone import WanI2V
from .checkpoint import PICKLE_SUFFIXES, TensorSource, refuse_pickle
from .cog_config import CogConfig
from .cog_modules import CogVideoXI2V
from .config import WanConfig
from .errors import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    MissingShardError,
    NotACheckpointError,
)
from .fingerprint import backbone_fingerprint
from .loading import check_tensors, module_shapes


class Family(NamedTuple):
    config: type  # its sizes, read from a released config.json
    convert_name: Callable  # released tensor name -> (part, name in ComfyUI's layout)
    backbone: type  # its standalone backbone module
    name: str  # in messages


FAMILIES = {"wan": Family(WanConfig, keys.convert_released_name, WanI2V, "Wan 2.1"),
            "cog": Family(CogConfig, cog_keys.convert_released_name, CogVideoXI2V, "CogVideoX")}


def family_of(config: dict, where: str) -> str:
    """The family a released transformer config describes, from its `_class_name` (a config without one is Wan's)."""
    name = config.get("_class_name", "WanTransformer3DModel")
    if not isinstance(name, str) or not name.startswith(("Wan", "CogVideoX")):
        raise NotACheckpointError(f"{where}: _class_name {name!r} is neither a Wan nor a CogVideoX transformer; the "
                                  "pack runs Video-As-Prompt's Wan2.1-I2V-14B and CogVideoX-I2V-5B checkpoints.")
    return "cog" if name.startswith("CogVideoX") else "wan"


@dataclass(kw_only=True)
class Released:
    src: str
    cfg: WanConfig | CogConfig
    layers: tuple  # backbone layers that carry an expert block
    tensors: TensorSource
    backbone_names: dict  # ComfyUI-layout name -> released name, of the backbone's tensors
    expert_names: dict  # the same, of the expert's

    def fingerprint(self) -> str:
        """Fingerprint of the backbone stored in this checkpoint (reads two small tensors)."""
        return backbone_fingerprint(lambda w: self.tensors.get(self.backbone_names[w]), self.cfg.num_layers,
                                    self.cfg.dim, self.cfg.family)

    def backbone_tensors(self) -> dict:
        """The frozen backbone's tensors in ComfyUI's layout, checked against the architecture. They are
        safetensors' memory-mapped tensors, not copies: the caller's loader copies each into its model once, so no
        second copy of the backbone is ever held. (CogVideoX's position table, re-laid out, is the one new tensor.)"""
        expected = module_shapes(FAMILIES[self.cfg.family].backbone(self.cfg, device="meta"))
        check_tensors(expected, {w: self.tensors.shape(n) for w, n in self.backbone_names.items()}, f"{self.src} (backbone)")
        tensors = {w: self.tensors.get(n) for w, n in self.backbone_names.items()}
        if self.cfg.family == "cog":
            table = "patch_embed.pos_embedding"
            tensors[table] = cog_keys.comfy_table(tensors[table], self.cfg.text_len)
        return tensors


def read_released(src, opened: TensorSource | None = None) -> Released:
    """Locate the checkpoint and sort its tensor names; reads no tensor data. `opened`: src, a single
    weights file, already opened."""
    config_path, config, tensors = locate_released(src, opened)
    family = FAMILIES[family_of(config, str(config_path))]
    cfg = family.config.from_diffusers(config, str(config_path))
    parts = {"backbone": {}, "expert": {}}
    for name in tensors.names():
        try:
            converted = family.convert_name(name)
        except KeyError:
            raise CheckpointMismatchError(
                f"{src}: unexpected tensor {name}; this is not a {family.name} VAP checkpoint (its config.json "
                "names that family).") from None
        if converted is not None:
            part, wan_name = converted
            parts[part][wan_name] = name
    layers = config.get("block_idx_with_mot_ref")
    if not layers or not parts["expert"]:
        raise NotACheckpointError(
            f"{src} holds no Video-As-Prompt expert (no *_mot_ref tensors / block_idx_with_mot_ref): it is a "
            f"plain {family.name} checkpoint. Point to the released VAP checkpoint.")
    if not (isinstance(layers, list) and all(type(i) is int and i >= 0 for i in layers)
            and len(set(layers)) == len(layers)):
        raise CorruptCheckpointError(f"{config_path}: block_idx_with_mot_ref is {layers!r}; it must be a list of "
                                     "distinct layer numbers (integers from 0). Download config.json again.")
    held = {int(m.group(1)) for name in parts["expert"] if (m := re.match(r"blocks\.(\d+)\.", name))}
    if held != set(layers):
        missing, unlisted = sorted(set(layers) - held), sorted(held - set(layers))
        raise CorruptCheckpointError(
            f"{config_path} does not match the weights beside it: block_idx_with_mot_ref "
            + (f"lists layer(s) {missing} that the weights hold no expert tensors for" if missing else
               f"leaves out layer(s) {unlisted} that the weights hold expert tensors for")
            + ". The config.json is damaged or from another checkpoint: download it again with the weights.")
    return Released(src=str(src), cfg=cfg, layers=tuple(sorted(layers)), tensors=tensors,
                    backbone_names=parts["backbone"], expert_names=parts["expert"])


def locate_released(path, opened: TensorSource | None = None) -> tuple[Path, dict, TensorSource]:
    """The config's path, the config and the tensors of a released VAP checkpoint (diffusers layout).

    `path` may be the weights file (single file or index json), the `transformer/` folder, or the
    folder above it. `opened`: that single file, already opened (so it is not opened twice).
    """
    path = Path(path)
    if not path.exists():
        raise MissingShardError(f"{path} does not exist. Point to the released checkpoint folder "
                                "(the one that holds transformer/), or to a file inside transformer/.")
    if path.is_dir():
        folder = path / "transformer" if (path / "transformer").is_dir() else path
        indexes = sorted(folder.glob("*.safetensors.index.json"))
        singles = sorted(folder.glob("*.safetensors"))
        if indexes:
            weights = indexes[0]
        elif len(singles) == 1:
            weights = singles[0]
        else:
            _refuse_pickle_folder(folder)
            raise NotACheckpointError(
                f"{path} is not a released VAP checkpoint: expected transformer/config.json beside one "
                "safetensors file or an index json with its shards.")
    else:
        refuse_pickle(path)
        weights, folder = path, path.parent
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise NotACheckpointError(
            f"no config.json beside {weights}: a released VAP checkpoint keeps it in transformer/ next "
            "to the weights. Download it too, or use an expert file exported by `python -m vap_core.export`.")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptCheckpointError(f"{config_path} is not valid JSON ({err}): download it again.") from None
    if not isinstance(config, dict):
        raise CorruptCheckpointError(f"{config_path} holds a JSON {type(config).__name__}, not the object of "
                                     "settings a transformer config.json holds: download it again.")
    if weights.name.endswith(".index.json"):
        return config_path, config, TensorSource(_shards(weights))
    if weights.suffix != ".safetensors":
        raise NotACheckpointError(f"{weights} is neither a .safetensors file nor an index json.")
    return config_path, config, opened if opened is not None else TensorSource([weights])


def _refuse_pickle_folder(folder: Path):
    pickles = [p for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        refuse_pickle(pickles[0])


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CorruptCheckpointError(
            f"{index} is not a safetensors index (no weight_map: {err}): it is damaged or not the checkpoint's index "
            "json. Download it again (it lists which shard holds each tensor), or point to the checkpoint's folder.") from None
    shards = sorted(set(weight_map.values()))
    folder = index.parent.resolve()
    for shard in shards:
        # a shard is a file of the index's own folder: no "..", no absolute path, no symlink out of it
        inside = isinstance(shard, str) and (folder / shard).resolve().parent == folder
        if not inside or not shard.endswith(".safetensors"):
            raise NotACheckpointError(
                f"{index} names {shard!r} as a shard; shards must be .safetensors files in the index's own folder "
                f"({folder}). Nothing was read. Download the checkpoint's index json again.")
    missing = [s for s in shards if not (index.parent / s).is_file()]
    if missing:
        raise MissingShardError(
            f"{len(missing)} of the {len(shards)} shards that {index.name} lists are missing from "
            f"{index.parent}: {', '.join(missing)}. Download them (every file of transformer/).")
    return [index.parent / s for s in shards]
