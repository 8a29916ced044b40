"""Colourfulness and named dominant colours."""

from __future__ import annotations

import numpy as np
import pytest

from curate.score_color import NAMES, colorfulness, dominant_colors
from curate.score_config import ScoreConfig
from curate.scoring import score_frames
from curate.synthetic import COLORS, Shot, render_shot

CFG = ScoreConfig(ocr=False)


@pytest.mark.parametrize("name", list(COLORS))
def test_shape_colour_is_named(name):
    f = np.stack(list(render_shot(Shot(kind="shape", color=name, seconds=1.0), 160, 96, 12.0)))
    colors = score_frames(f, 12.0, CFG)["dominant_colors"]
    assert colors[0] in ("gray", "black")  # the dim plain background covers most
    assert name in colors
    assert set(colors) <= set(NAMES)


def test_colorfulness_orders_gray_below_vivid():
    gray = np.full((2, 32, 32, 3), 128, np.uint8)
    vivid = np.zeros((2, 32, 32, 3), np.uint8)
    vivid[:, :16] = COLORS["red"]
    vivid[:, 16:] = COLORS["blue"]
    assert colorfulness(gray) == 0.0 and colorfulness(vivid) > 45
    assert dominant_colors(vivid, 0.1, 5) == ["red", "blue"] or dominant_colors(vivid, 0.1, 5) == [
        "blue",
        "red",
    ]
