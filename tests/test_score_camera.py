"""Camera-motion classes from the shared flow field, on synthetic camera moves."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from curate.score_config import ScoreConfig
from curate.scoring import score_frames
from curate.synthetic import Shot, render_shot

CFG = ScoreConfig(ocr=False)


def frames(shot: Shot, w: int = 192, h: int = 112, fps: float = 12.0) -> np.ndarray:
    return np.stack(list(render_shot(shot, w, h, fps)))


def test_static_camera():
    s = score_frames(frames(Shot(kind="static", seconds=2.0, background=2)), 12.0, CFG)
    assert s["camera_motion"] == "static" and s["camera_confidence"] == 1.0


@pytest.mark.parametrize(
    "direction,expected",
    [("right", "pan_right"), ("left", "pan_left"), ("up", "tilt_up"), ("down", "tilt_down")],
)
def test_pans_and_tilts(direction, expected):
    s = score_frames(
        frames(Shot(kind="pan", seconds=2.0, direction=direction, speed=0.15)), 12.0, CFG
    )
    assert s["camera_motion"] == expected
    assert s["camera_confidence"] >= 0.7


@pytest.mark.parametrize("direction", ["in", "out"])
def test_zooms(direction):
    s = score_frames(
        frames(Shot(kind="zoom", seconds=2.0, direction=direction, speed=0.2)), 12.0, CFG
    )
    assert s["camera_motion"] == f"zoom_{direction}"
    assert s["camera_confidence"] >= 0.7


def test_shaky_camera():
    """A textured frame jittered by random translations (no steady direction) is shaky."""
    base = frames(Shot(kind="static", seconds=0.1, background=5), 256, 160)[0]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(30):
        dx, dy = rng.uniform(-6, 6, size=2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        out.append(
            cv2.warpAffine(base, m, (256, 160), borderMode=cv2.BORDER_REFLECT)[16:-16, 16:-16]
        )
    s = score_frames(np.stack(out), 12.0, CFG)
    assert s["camera_motion"] == "shaky"
