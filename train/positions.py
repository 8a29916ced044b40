"""Positions of spacetime tokens: 3D rotary embeddings (RoPE, as in Wan 2.1) and fixed 3D
sin-cos embeddings (as in facebookresearch/DiT, per axis), for a (t, h, w) grid in raster order."""

from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Split the head size over (t, h, w) as Wan does: h and w get 2*(d//6) each, t the rest."""
    dh = dw = 2 * (head_dim // 6)
    return head_dim - dh - dw, dh, dw


def _axis_freqs(n: int, dim: int, theta: float, device) -> torch.Tensor:
    """(n, dim//2) rotation angles for positions 0..n-1 along one axis."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim))
    pos = torch.arange(n, device=device, dtype=torch.float64)
    return torch.outer(pos, inv)


def rope_angles(
    grid: tuple[int, int, int], head_dim: int, theta: float, device=None
) -> torch.Tensor:
    """Rotation angles for a (t, h, w) token grid in raster order: (t*h*w, head_dim//2)."""
    gt, gh, gw = grid
    dt, dh, dw = rope_axis_dims(head_dim)
    ft = _axis_freqs(gt, dt, theta, device)[:, None, None, :].expand(gt, gh, gw, dt // 2)
    fh = _axis_freqs(gh, dh, theta, device)[None, :, None, :].expand(gt, gh, gw, dh // 2)
    fw = _axis_freqs(gw, dw, theta, device)[None, None, :, :].expand(gt, gh, gw, dw // 2)
    return torch.cat([ft, fh, fw], dim=-1).reshape(gt * gh * gw, head_dim // 2).float()


def sincos_position_embedding(grid: tuple[int, int, int], dim: int, device=None) -> torch.Tensor:
    """Fixed sin-cos embedding of each (t, h, w) grid position in raster order: (t*h*w, dim).

    ``dim`` is split over (t, h, w) as in :func:`rope_axis_dims`; each axis gets DiT's 1D
    sin-cos embedding of its integer position (base 10000)."""
    gt, gh, gw = grid
    dt, dh, dw = rope_axis_dims(dim)

    def axis(n: int, d: int) -> torch.Tensor:  # (n, d)
        omega = 1.0 / 10000 ** (torch.arange(d // 2, device=device, dtype=torch.float64) / (d / 2))
        ang = torch.outer(torch.arange(n, device=device, dtype=torch.float64), omega)
        return torch.cat([ang.sin(), ang.cos()], dim=1)

    et = axis(gt, dt)[:, None, None, :].expand(gt, gh, gw, dt)
    eh = axis(gh, dh)[None, :, None, :].expand(gt, gh, gw, dh)
    ew = axis(gw, dw)[None, None, :, :].expand(gt, gh, gw, dw)
    return torch.cat([et, eh, ew], dim=-1).reshape(gt * gh * gw, dim).float()


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` (B, heads, N, d) by ``angles`` (N, d/2)."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, heads, N, d/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    cos, sin = angles.cos(), angles.sin()
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)
