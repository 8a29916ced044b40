"""Motion scorer on synthetic shots with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from curate.score_config import ScoreConfig
from curate.scoring import score_frames
from curate.synthetic import DIRECTIONS, Shot, render_shot

CFG = ScoreConfig(ocr=False)


def frames(shot: Shot, w: int = 192, h: int = 112, fps: float = 12.0) -> np.ndarray:
    return np.stack(list(render_shot(shot, w, h, fps)))


def test_static_clip_has_no_motion_and_is_frozen():
    s = score_frames(frames(Shot(kind="static", seconds=2.0, background=4)), 12.0, CFG)
    assert s["motion"] < 0.05 and s["frame_diff"] < 0.5
    assert s["static_frac"] == 1.0 and s["is_frozen"] is True
    assert s["motion_direction"] == "none"


@pytest.mark.parametrize(("background", "crf"), [(1, 18), (4, 18), (14, 28)])
def test_a_still_image_through_a_codec_is_frozen_a_slow_move_is_not(tmp_path, background, crf):
    """x264 makes a held image pulse (up to 0.52 grey levels between samples for background 1),
    which a threshold at 0.5 took for change. A slow zoom or pan differs as little between
    neighbouring samples but drifts from its first frame: not frozen."""
    from common.video import decode_mp4
    from curate.synthetic import write_video

    def scored(shot: Shot) -> dict:
        path = tmp_path / f"{shot.kind}.mp4"
        write_video(path, [shot], width=320, height=180, fps=24.0, crf=crf)
        return score_frames(decode_mp4(path)[::2], 12.0, CFG)  # the split's 12 fps

    s = scored(Shot(kind="static", seconds=3.0, background=background))
    assert s["is_frozen"] is True and s["static_frac"] == 1.0
    for slow in (Shot(kind="zoom", direction="in", speed=0.005, seconds=3.0, background=13),
                 Shot(kind="pan", direction="right", speed=0.002, seconds=3.0, background=12),
                 Shot(kind="shape", seconds=2.5, background=background, speed=0.05)):  # fmt: skip
        assert scored(slow)["is_frozen"] is False, slow


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("color", ["red", "blue"])  # blue is near the background's luma
def test_shape_direction_is_measured(direction, color):
    shot = Shot(
        kind="shape", seconds=2.0, direction=direction, color=color, speed=0.25, background=11
    )
    s = score_frames(frames(shot), 12.0, CFG)
    assert s["motion_direction"] == direction
    assert s["motion"] > 0.2 and s["static_frac"] == 0.0 and s["is_frozen"] is False
    assert s["camera_motion"] == "static"  # the object moves, not the camera


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pan_is_camera_motion_not_object_motion(direction):
    s = score_frames(
        frames(Shot(kind="pan", seconds=2.0, direction=direction, speed=0.2)), 12.0, CFG
    )
    assert s["motion_direction"] == "none"
    assert s["motion"] > 2.0 and s["static_frac"] == 0.0


def test_faster_shape_moves_more():
    slow = score_frames(frames(Shot(kind="shape", seconds=2.0, speed=0.1)), 12.0, CFG)
    fast = score_frames(frames(Shot(kind="shape", seconds=2.0, speed=0.4)), 12.0, CFG)
    assert fast["motion"] > 2 * slow["motion"] > 0


def test_black_clip_is_not_frozen():
    s = score_frames(frames(Shot(kind="black", seconds=1.0)), 12.0, CFG)
    assert s["is_frozen"] is False and s["motion"] == 0.0
