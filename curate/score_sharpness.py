"""Sharpness scorer: the median variance of the Laplacian over a few sampled frames.

Measured on luma downsized to ``sharpness_short_side`` (never upscaled), so values compare
across resolutions. Blur, defocus and heavy compression lower it. Column: ``sharpness``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from curate.score_context import ScoreContext, evenly, resize_short

NAME = "sharpness"
COLUMNS = ("sharpness",)


def laplacian_variance(rgb: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of an RGB frame's luma."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_32F, ksize=1).var())


def score(ctx: ScoreContext) -> dict[str, Any]:
    """Sharpness of one clip."""
    full = ctx.sampled_full
    picks = evenly(len(full), ctx.cfg.sharpness_frames)
    vals = [laplacian_variance(resize_short(full[i], ctx.cfg.sharpness_short_side)) for i in picks]
    return {"sharpness": float(np.median(vals))}
