"""The released VAP checkpoint (diffusers layout): which of its tensors are backbone and which expert."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .backbone import WanI2V
from .checkpoint import TensorSource, check_tensors, locate_released, module_shapes
from .config import WanConfig
from .errors import CheckpointMismatchError, CorruptCheckpointError, NotACheckpointError
from .fingerprint import backbone_fingerprint
from .keys import convert_released_name


@dataclass(kw_only=True)
class Released:
    src: str
    cfg: WanConfig
    layers: tuple  # backbone layers that carry an expert block
    tensors: TensorSource
    backbone_names: dict  # Wan-layout name -> released name, of the backbone's tensors
    expert_names: dict  # the same, of the expert's

    def fingerprint(self) -> str:
        """Fingerprint of the backbone stored in this checkpoint (reads two small tensors)."""
        return backbone_fingerprint(lambda w: self.tensors.get(self.backbone_names[w]), self.cfg.num_layers, self.cfg.dim)

    def backbone_tensors(self) -> dict:
        """The frozen backbone's tensors under Wan-layout names (ComfyUI's), checked against the
        architecture. They are safetensors' memory-mapped tensors, not copies: the caller's loader
        copies each into its model once, so no second copy of the backbone is ever held."""
        expected = module_shapes(WanI2V(self.cfg, device="meta"))
        check_tensors(expected, {w: self.tensors.shape(n) for w, n in self.backbone_names.items()}, f"{self.src} (backbone)")
        return {w: self.tensors.get(n) for w, n in self.backbone_names.items()}


def read_released(src, opened: TensorSource | None = None) -> Released:
    """Locate the checkpoint and sort its tensor names; reads no tensor data. `opened`: src, a single
    weights file, already opened."""
    config_path, config, tensors = locate_released(src, opened)
    cfg = WanConfig.from_diffusers(config, str(config_path))
    parts = {"backbone": {}, "expert": {}}
    for name in tensors.names():
        try:
            converted = convert_released_name(name)
        except KeyError:
            raise CheckpointMismatchError(
                f"{src}: unexpected tensor {name}; this is not a Wan 2.1 VAP checkpoint.") from None
        if converted is not None:
            part, wan_name = converted
            parts[part][wan_name] = name
    layers = config.get("block_idx_with_mot_ref")
    if not layers or not parts["expert"]:
        raise NotACheckpointError(
            f"{src} holds no Video-As-Prompt expert (no *_mot_ref tensors / block_idx_with_mot_ref): it is a "
            "plain Wan checkpoint. Point to the released VAP checkpoint.")
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
