"""Motion scorer: how much moves, whether the clip is near-static or frozen, and which way the
moving content goes relative to the background.

Flow pairs are each sampled frame and the frame ``flow_step`` later (``ScoreContext.pairs``).
Columns: ``motion`` (mean Farneback flow magnitude, px/frame at 256 px short side),
``frame_diff`` (mean absolute gray difference of the flow pairs' frames, 0..255),
``static_frac`` (share of near-static flow pairs: almost no pixel moves, little gray change),
``is_frozen`` (no pair moves and no two consecutive samples differ: a held still image),
``motion_direction`` (left/right/up/down/none: the majority over pairs of the mean flow left
after removing the fitted camera motion, over the pixels that move; none when under half the
pairs have coherent moving content).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from curate.score_context import ScoreContext

NAME = "motion"
COLUMNS = ("motion", "frame_diff", "static_frac", "is_frozen", "motion_direction")


def _interior(mask: np.ndarray) -> np.ndarray:
    """``mask`` (..., h, w) with a border cleared: flow at the edges (content entering, the
    Farneback window leaving the frame) is unreliable."""
    b = max(1, min(mask.shape[-2:]) // 16)
    mask[..., :b, :], mask[..., -b:, :] = False, False
    mask[..., :, :b], mask[..., :, -b:] = False, False
    return mask


def _pair_direction(res: np.ndarray, cam: np.ndarray, ctx: ScoreContext) -> str | None:
    """Direction of the coherent moving content of one pair's residual flow, or None."""
    cfg = ctx.cfg
    mag = np.hypot(res[..., 0], res[..., 1])
    # residual errors grow with the camera's own motion: a pixel moves when it beats 1.5x it
    mask = mag > cfg.object_min_motion + 1.5 * np.hypot(cam[..., 0], cam[..., 1])
    mask = _interior(mask)
    if mask.mean() < cfg.object_min_area:
        return None
    mean = res[mask].mean(axis=0)
    if np.hypot(*mean) < 0.5 * mag[mask].mean():
        return None  # moving parts disagree (flicker, several objects): no direction
    if abs(mean[0]) >= abs(mean[1]):
        return "right" if mean[0] > 0 else "left"
    return "down" if mean[1] > 0 else "up"


def _direction(ctx: ScoreContext) -> str:
    """Dominant direction of content moving against the camera-compensated background: the
    majority vote of the sample pairs, when at least half of the pairs have moving content."""
    votes = []
    for i in range(len(ctx.flows_ref)):
        cam = ctx.camera_flow(i)
        votes.append(_pair_direction(ctx.flows_ref[i] - cam, cam, ctx))
    named = [v for v in votes if v is not None]
    if not named or len(named) < 0.5 * len(votes):
        return "none"
    return Counter(named).most_common(1)[0][0]


def score(ctx: ScoreContext) -> dict[str, Any]:
    """Motion columns of one clip."""
    cfg = ctx.cfg
    if len(ctx.pairs) == 0:
        return {"motion": 0.0, "frame_diff": 0.0, "static_frac": 1.0, "is_frozen": False,
                "motion_direction": "none"}  # fmt: skip
    norms = np.hypot(ctx.flows_ref[..., 0], ctx.flows_ref[..., 1])
    mags = norms.mean(axis=(1, 2))
    moving = _interior(norms > cfg.object_min_motion).mean(axis=(1, 2))  # share of moving pixels
    diffs = ctx.pair_diffs
    still = moving < cfg.object_min_area
    static = still & (diffs < cfg.static_diff) & (mags < cfg.static_motion)
    black = float(ctx.gray.mean()) <= cfg.black_luma
    # a held image only pulses with the codec; a slow camera move also drifts: its first and
    # last samples differ more than any two neighbours
    g = ctx.gray
    drift = float(np.abs(g[0].astype(np.int16) - g[-1].astype(np.int16)).mean())
    frozen = (
        still.all()
        and (ctx.diffs < cfg.frozen_diff).all()
        and (diffs < cfg.frozen_diff).all()
        and drift < cfg.frozen_diff
    )
    return {
        "motion": float(mags.mean()),
        "frame_diff": float(diffs.mean()),
        "static_frac": float(static.mean()),
        "is_frozen": bool(not black and frozen),
        "motion_direction": _direction(ctx),
    }
