"""Sizes of a Wan 2.1 image-to-video transformer, shared by the backbone and the VAP expert."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

from .errors import CorruptCheckpointError, NotACheckpointError


@dataclass(frozen=True)
class WanConfig:
    family: ClassVar[str] = "wan"
    dim: int
    num_heads: int
    ffn_dim: int
    num_layers: int
    in_dim: int = 36
    out_dim: int = 16
    text_dim: int = 4096
    image_dim: int = 1280
    freq_dim: int = 256
    eps: float = 1e-6
    patch_size: tuple = (1, 2, 2)
    text_len: int = 512

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def spatial_patch(self) -> tuple[int, int]:
        return tuple(self.patch_size[1:])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "WanConfig":
        d = json.loads(text)
        d["patch_size"] = tuple(d["patch_size"])
        return cls(**d)

    @classmethod
    def from_diffusers(cls, cfg: dict, where: str = "config.json") -> "WanConfig":
        """Read the sizes from a released (diffusers layout) transformer config."""
        if cfg.get("image_dim") is None:
            raise NotACheckpointError(
                f"{where} describes a text-to-video Wan model (no image_dim); Video-As-Prompt needs the "
                "Wan 2.1 image-to-video checkpoint it was released with.")
        for key, want in (("qk_norm", "rms_norm_across_heads"), ("cross_attn_norm", True)):
            if cfg.get(key, want) != want:
                raise NotACheckpointError(f"{where}: {key}={cfg.get(key)!r} is not a Wan 2.1 setting (expected {want!r}).")
        if cfg.get("attention_head_dim_mot_ref") is not None:
            raise NotACheckpointError(
                f"{where}: an expert narrower or wider than the backbone (attention_head_dim_mot_ref) is not supported.")
        def field(key, default=None, ok=lambda v: type(v) is int and v > 0, want="a positive integer"):
            value = cfg.get(key, default)
            if value is None:
                raise NotACheckpointError(f"{where} lacks '{key}': it is not a Wan transformer config.")
            if not ok(value):
                raise CorruptCheckpointError(f"{where}: {key} is {value!r}; it must be {want}. Download config.json again.")
            return value

        heads = field("num_attention_heads")
        return cls(
            dim=heads * field("attention_head_dim"),
            num_heads=heads,
            ffn_dim=field("ffn_dim"),
            num_layers=field("num_layers"),
            in_dim=field("in_channels", 36),
            out_dim=field("out_channels", 16),
            text_dim=field("text_dim", 4096),
            image_dim=field("image_dim"),
            freq_dim=field("freq_dim", 256),
            eps=field("eps", 1e-6, lambda v: type(v) in (int, float) and v > 0, "a positive number"),
            patch_size=tuple(field("patch_size", (1, 2, 2), _three_positive_ints, "a list of 3 positive integers")),
        )


def _three_positive_ints(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 3 and all(type(v) is int and v > 0 for v in value)
