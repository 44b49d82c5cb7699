"""3D rotary position embedding (Wan's, and with its own channel split CogVideoX's), with the temporal start that
VAP shifts for the reference."""
from __future__ import annotations

import torch


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Channels of a head given to the frame, height and width axes (Wan's split)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_table(head_dim: int, grid: tuple[int, int, int], t_start: int = 0, theta: float = 10000.0,
               device=None, axes: tuple[int, int, int] | None = None) -> torch.Tensor:
    """The rotations as unit complex numbers, shape (frames*height*width, head_dim // 2), complex64.

    Frames get temporal positions t_start .. t_start + frames - 1; the target uses 0, and the
    reference -rope_delta, which places it before the target in time. `axes`: channels per axis (default: Wan's split).
    """
    f, h, w = grid
    positions = (torch.arange(f, dtype=torch.float64) + t_start,
                 torch.arange(h, dtype=torch.float64),
                 torch.arange(w, dtype=torch.float64))
    angles = []
    for pos, dim in zip(positions, axes or rope_axes(head_dim)):
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles.append(torch.outer(pos, inv_freq))
    a_t, a_h, a_w = angles
    grid_angles = torch.cat([
        a_t[:, None, None, :].expand(f, h, w, -1),
        a_h[None, :, None, :].expand(f, h, w, -1),
        a_w[None, None, :, :].expand(f, h, w, -1),
    ], dim=-1).reshape(f * h * w, -1)
    return torch.polar(torch.ones_like(grid_angles), grid_angles).to(device=device, dtype=torch.complex64)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x (batch, tokens, heads, head_dim) by the table's angles:
    one complex multiplication, in float32."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * table[None, :, None, :]).flatten(-2).type_as(x)
