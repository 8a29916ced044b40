"""An oracle that reads a moving-shape clip back: the object's colour, its direction, its presence.

The judge of the text-faithfulness benchmark. It knows nothing about how a clip was made:
it estimates the background as each frame's median colour, takes the pixels that differ
from it as the object, names the object's mean colour after the nearest of
``curate.synthetic.COLORS``, and fits a line through the object's centroid track.
It is tested on the generator's own output, so a broken judge cannot pass the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.synthetic import COLORS

_NAMES = list(COLORS)
_RGB = np.array([COLORS[n] for n in _NAMES], np.float32)


@dataclass(frozen=True)
class Reading:
    """What the oracle read from one clip."""

    color: str | None
    """Nearest named colour of the object (None when no object is ever found)."""
    direction: str | None
    """left, right, up, down, or None when the object does not move clearly."""
    presence: float
    """Share of frames in which an object is found."""
    color_distance: float
    """RGB distance from the object's mean colour to the named colour (confidence, lower is surer)."""


def object_mask(frame: np.ndarray, threshold: float = 60.0) -> np.ndarray:
    """Pixels that differ from the frame's median colour by more than ``threshold`` (RGB L2)."""
    f = frame.astype(np.float32)
    bg = np.median(f.reshape(-1, 3), axis=0)
    return np.linalg.norm(f - bg, axis=-1) > threshold


def read_clip(
    frames: np.ndarray,
    threshold: float = 60.0,
    min_area: float = 0.004,
    min_travel: float = 0.08,
) -> Reading:
    """Read one clip ``(T, H, W, 3)`` uint8 RGB.

    An object is present in a frame when at least ``min_area`` of the pixels belong to it.
    A direction is reported when the centroid travels at least ``min_travel`` of the frame
    size along its main axis over the clip.
    """
    t, h, w, _ = frames.shape
    cents: list[tuple[int, float, float]] = []
    colors: list[np.ndarray] = []
    for i, frame in enumerate(frames):
        m = object_mask(frame, threshold)
        if m.mean() < min_area:
            continue
        ys, xs = np.nonzero(m)
        cents.append((i, xs.mean() / w, ys.mean() / h))
        colors.append(frame[m].astype(np.float32).mean(axis=0))
    presence = len(cents) / max(t, 1)
    if not cents:
        return Reading(None, None, 0.0, float("inf"))
    mean_rgb = np.mean(colors, axis=0)
    d = np.linalg.norm(_RGB - mean_rgb, axis=1)
    color = _NAMES[int(np.argmin(d))]
    direction = None
    if len(cents) >= 2:
        idx = np.array([c[0] for c in cents], np.float32)
        xs = np.array([c[1] for c in cents])
        ys = np.array([c[2] for c in cents])
        span = max(idx[-1] - idx[0], 1.0)
        dx = np.polyfit(idx, xs, 1)[0] * span
        dy = np.polyfit(idx, ys, 1)[0] * span
        if max(abs(dx), abs(dy)) >= min_travel:
            if abs(dx) >= abs(dy):
                direction = "right" if dx > 0 else "left"
            else:
                direction = "down" if dy > 0 else "up"
    return Reading(color, direction, presence, float(d.min()))
