"""Sizes of a Wan 2.1 image-to-video transformer, shared by the backbone and the VAP expert."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from .errors import NotACheckpointError


@dataclass(frozen=True)
class WanConfig:
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
        try:
            return cls(
                dim=cfg["num_attention_heads"] * cfg["attention_head_dim"],
                num_heads=cfg["num_attention_heads"],
                ffn_dim=cfg["ffn_dim"],
                num_layers=cfg["num_layers"],
                in_dim=cfg.get("in_channels", 36),
                out_dim=cfg.get("out_channels", 16),
                text_dim=cfg.get("text_dim", 4096),
                image_dim=cfg["image_dim"],
                freq_dim=cfg.get("freq_dim", 256),
                eps=cfg.get("eps", 1e-6),
                patch_size=tuple(cfg.get("patch_size", (1, 2, 2))),
            )
        except KeyError as err:
            raise NotACheckpointError(f"{where} lacks {err}: it is not a Wan transformer config.") from None
