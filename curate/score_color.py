"""Colour scorer: colourfulness and the dominant named colours.

``colorfulness``: Hasler & Suesstrunk (2003) on RGB, averaged over the sampled frames
(0 for gray; ~15 muted, ~45 vivid, 100+ extreme). ``dominant_colors``: every pixel of the
sampled frames is named by a fixed HSV rule (black / gray / white by value and saturation,
else one of the hue names, brown for dark orange), and the names covering at least
``dominant_min_share`` are listed, most covering first.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from curate.score_context import ScoreContext, evenly

NAME = "color"
COLUMNS = ("colorfulness", "dominant_colors")

HUE_NAMES: tuple[tuple[float, str], ...] = (
    (15, "red"),
    (40, "orange"),
    (70, "yellow"),
    (160, "green"),
    (200, "cyan"),
    (260, "blue"),
    (300, "purple"),
    (345, "pink"),
    (360, "red"),
)
"""Upper hue bound in degrees (exclusive) → name, for saturated pixels."""

NAMES = ("black", "gray", "white", "brown", *dict.fromkeys(n for _, n in HUE_NAMES))
"""Every colour name ``dominant_colors`` can hold."""

_BLACK_V, _GRAY_S, _WHITE_V, _BROWN_V = 0.2, 0.22, 0.8, 0.55


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler-Suesstrunk colourfulness of one or more RGB frames (mean over frames)."""
    f = rgb.reshape(-1, rgb.shape[-3] * rgb.shape[-2], 3).astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    std = np.hypot(rg.std(axis=1), yb.std(axis=1))
    mean = np.hypot(rg.mean(axis=1), yb.mean(axis=1))
    return float((std + 0.3 * mean).mean())


def name_pixels(rgb: np.ndarray) -> np.ndarray:
    """Index into NAMES of each pixel of an (..., 3) uint8 RGB array."""
    hsv = cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3)
    hue = hsv[:, 0].astype(np.float32) * (360.0 / 256.0)
    s = hsv[:, 1].astype(np.float32) / 255.0
    v = hsv[:, 2].astype(np.float32) / 255.0
    bounds = np.array([b for b, _ in HUE_NAMES], np.float32)
    hue_idx = np.searchsorted(bounds, hue, side="right")
    hue_names = np.array([NAMES.index(n) for _, n in HUE_NAMES] + [NAMES.index("red")])
    out = hue_names[np.minimum(hue_idx, len(HUE_NAMES))]
    brown = (out == NAMES.index("orange")) & (v < _BROWN_V)
    out = np.where(brown, NAMES.index("brown"), out)
    neutral = s < _GRAY_S
    out = np.where(neutral, np.where(v > _WHITE_V, NAMES.index("white"), NAMES.index("gray")), out)
    out = np.where(v < _BLACK_V, NAMES.index("black"), out)
    return out


def dominant_colors(rgb: np.ndarray, min_share: float, max_colors: int) -> list[str]:
    """Named colours covering at least ``min_share`` of the pixels, most covering first."""
    counts = np.bincount(name_pixels(rgb), minlength=len(NAMES)) / max(1, rgb.size // 3)
    order = np.argsort(-counts, kind="stable")
    return [NAMES[i] for i in order if counts[i] >= min_share][:max_colors]


def score(ctx: ScoreContext) -> dict[str, Any]:
    """Colour columns of one clip (on up to 4 evenly spaced sampled frames)."""
    cfg = ctx.cfg
    small = ctx.small[evenly(len(ctx.small), 4)]
    return {
        "colorfulness": colorfulness(small),
        "dominant_colors": dominant_colors(small, cfg.dominant_min_share, cfg.dominant_max_colors),
    }
