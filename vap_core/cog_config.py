"""Sizes of a CogVideoX-I2V-5B transformer (CogVideoX 1.0 with RoPE and a learned position table), shared by
the backbone and the VAP expert."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

from .errors import CorruptCheckpointError, NotACheckpointError
from .vae_grid import latent_frames

# the settings of CogVideoX-5B-I2V that the pack implements; any other value is another model
_FIXED = {"patch_size_t": None, "ofs_embed_dim": None, "use_rotary_positional_embeddings": True,
          "use_learned_positional_embeddings": True, "activation_fn": "gelu-approximate", "attention_bias": True,
          "flip_sin_to_cos": True, "freq_shift": 0, "temporal_compression_ratio": 4}
_WHY = {"patch_size_t": "a temporal patch (CogVideoX 1.5)", "ofs_embed_dim": "an ofs embedding (CogVideoX 1.5 I2V)",
        "use_rotary_positional_embeddings": "no RoPE (CogVideoX-2B)",
        "use_learned_positional_embeddings": "no learned position table (a text-to-video CogVideoX)"}


@dataclass(frozen=True)
class CogConfig:
    family: ClassVar[str] = "cog"
    num_heads: int
    num_layers: int
    head_dim: int = 64
    in_dim: int = 32
    out_dim: int = 16
    text_dim: int = 4096
    time_dim: int = 512
    patch: int = 2
    eps: float = 1e-5
    sample_frames: int = 49  # pixel frames, height and width (in latent pixels) the learned table was made for
    sample_height: int = 60
    sample_width: int = 90
    text_len: int = 226  # T5 tokens: the table's text rows

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def spatial_patch(self) -> tuple[int, int]:
        return self.patch, self.patch

    @property
    def grid(self) -> tuple[int, int, int]:
        """(frames, height, width) in tokens of the one size the learned table fits."""
        return latent_frames(self.sample_frames), self.sample_height // self.patch, self.sample_width // self.patch

    @property
    def table_rows(self) -> int:
        f, h, w = self.grid
        return self.text_len + f * h * w

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CogConfig":
        return cls(**json.loads(text))

    @classmethod
    def from_diffusers(cls, cfg: dict, where: str = "config.json") -> "CogConfig":
        """Read the sizes from a released (diffusers layout) CogVideoX transformer config."""
        for key, want in _FIXED.items():
            if cfg.get(key, want) != want:
                what = _WHY.get(key, f"{key}={cfg.get(key)!r}")
                raise NotACheckpointError(
                    f"{where} describes a CogVideoX with {what}; the pack runs the CogVideoX-5B-I2V variant that "
                    "Video-As-Prompt released (CogVideoX 1.0 I2V: RoPE and a learned position table, no temporal "
                    "patch, no ofs embedding). Use ByteDance/Video-As-Prompt-CogVideoX-5B.")

        def field(key, default=None):
            value = cfg.get(key, default)
            if value is None:
                raise NotACheckpointError(f"{where} lacks '{key}': it is not a CogVideoX transformer config.")
            if type(value) is not int or value <= 0:
                raise CorruptCheckpointError(f"{where}: {key} is {value!r}; it must be a positive integer. "
                                             "Download config.json again.")
            return value

        eps = cfg.get("norm_eps", 1e-5)
        if type(eps) not in (int, float) or eps <= 0:
            raise CorruptCheckpointError(f"{where}: norm_eps is {eps!r}; it must be a positive number.")
        head_dim = field("attention_head_dim", 64)
        if head_dim % 8:
            raise NotACheckpointError(f"{where}: attention_head_dim {head_dim} is not a multiple of 8, which "
                                      "CogVideoX's 3-D RoPE splits a head by.")
        return cls(num_heads=field("num_attention_heads"), num_layers=field("num_layers"), head_dim=head_dim,
                   in_dim=field("in_channels", 32), out_dim=field("out_channels", 16),
                   text_dim=field("text_embed_dim", 4096), time_dim=field("time_embed_dim", 512),
                   patch=field("patch_size", 2), eps=float(eps), sample_frames=field("sample_frames", 49),
                   sample_height=field("sample_height", 60), sample_width=field("sample_width", 90),
                   text_len=field("max_text_seq_length", 226))
