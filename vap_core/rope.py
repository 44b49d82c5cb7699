"""3D rotary position embedding of Wan, with the temporal start that VAP shifts for the reference."""
from __future__ import annotations

import torch


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Channels of a head given to the frame, height and width axes (Wan's split)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_table(head_dim: int, grid: tuple[int, int, int], t_start: int = 0, theta: float = 10000.0,
               device=None) -> torch.Tensor:
    """cos and sin of the rotation angles, shape (2, frames*height*width, head_dim // 2).

    Frames get temporal positions t_start .. t_start + frames - 1; the target uses 0, and the
    reference -rope_delta, which places it before the target in time.
    """
    f, h, w = grid
    positions = (torch.arange(f, dtype=torch.float64) + t_start,
                 torch.arange(h, dtype=torch.float64),
                 torch.arange(w, dtype=torch.float64))
    angles = []
    for pos, dim in zip(positions, rope_axes(head_dim)):
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles.append(torch.outer(pos, inv_freq))
    a_t, a_h, a_w = angles
    grid_angles = torch.cat([
        a_t[:, None, None, :].expand(f, h, w, -1),
        a_h[None, :, None, :].expand(f, h, w, -1),
        a_w[None, None, :, :].expand(f, h, w, -1),
    ], dim=-1).reshape(f * h * w, -1)
    return torch.stack([grid_angles.cos(), grid_angles.sin()]).to(device=device, dtype=torch.float32)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x (batch, tokens, heads, head_dim) by the table's angles."""
    cos = table[0][None, :, None, :]
    sin = table[1][None, :, None, :]
    x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2).type_as(x)
