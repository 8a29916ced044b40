"""Exposure: mean luma, crushed / clipped pixel shares, black detection."""

from __future__ import annotations

import numpy as np

from curate.score_config import ScoreConfig
from curate.scoring import score_frames
from curate.synthetic import Shot, render_shot

CFG = ScoreConfig(ocr=False)


def frames(shot: Shot) -> np.ndarray:
    return np.stack(list(render_shot(shot, 160, 96, 12.0)))


def test_dark_and_bright_clips():
    normal = frames(Shot(kind="static", seconds=1.0, background=1))
    dark = (normal.astype(np.float32) * 0.08).astype(np.uint8)
    bright = np.clip(normal.astype(np.float32) * 2.5 + 60, 0, 255).astype(np.uint8)
    n, d, b = (score_frames(x, 12.0, CFG) for x in (normal, dark, bright))
    assert d["luma_mean"] < 20 < n["luma_mean"] < b["luma_mean"]
    assert d["dark_frac"] > 0.5 and n["dark_frac"] < 0.05
    assert b["bright_frac"] > 0.3 and n["bright_frac"] < 0.05
    assert not n["is_black"] and not b["is_black"]


def test_black_clip_and_fade():
    assert score_frames(frames(Shot(kind="black", seconds=1.0)), 12.0, CFG)["is_black"] is True
    faded = frames(Shot(kind="static", seconds=2.0, fade_in=1.0))  # dark for half the clip only
    assert score_frames(faded, 12.0, CFG)["is_black"] is False
