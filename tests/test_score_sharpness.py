"""Sharpness: a blurred copy scores lower than the sharp original."""

from __future__ import annotations

import cv2
import numpy as np

from curate.score_config import ScoreConfig
from curate.scoring import score_frames
from curate.synthetic import Shot, render_shot

CFG = ScoreConfig(ocr=False)


def test_blurred_copy_is_less_sharp():
    sharp = np.stack(
        list(render_shot(Shot(kind="shape", seconds=1.5, shape="square"), 192, 112, 12.0))
    )
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in sharp])
    s_sharp = score_frames(sharp, 12.0, CFG)["sharpness"]
    s_blur = score_frames(blurred, 12.0, CFG)["sharpness"]
    assert s_blur < 0.5 * s_sharp


def test_sharpness_compares_across_resolutions():
    """Measured at a fixed short side: the same content at 2x size scores about the same."""
    small = np.stack(list(render_shot(Shot(kind="pan", seconds=1.0, background=3), 384, 256, 12.0)))
    big = np.stack([cv2.resize(f, (768, 512), interpolation=cv2.INTER_CUBIC) for f in small])
    a = score_frames(small, 12.0, CFG)["sharpness"]
    b = score_frames(big, 12.0, CFG)["sharpness"]
    assert 0.5 < a / b < 2.0
