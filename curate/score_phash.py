"""Perceptual-hash scorer: 64-bit DCT hashes (pHash) of a clip's key frames, for dedup.

Each key frame's luma is resized to 32x32, its 2-D DCT taken, and the 8x8 lowest frequencies
(DC excluded from the median) thresholded at their median: bit k set when coefficient k is
above it. Robust to re-encoding, rescaling and mild colour changes. Column: ``phash``
(``phash_frames`` unsigned 64-bit ints, key frames in time order; the middle one is banded
by dedup).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from curate.score_context import ScoreContext, evenly

NAME = "phash"
COLUMNS = ("phash",)

_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def phash(rgb: np.ndarray) -> int:
    """64-bit perceptual hash of one RGB frame."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int((bits.astype(np.uint64) * _WEIGHTS).sum(dtype=np.uint64))


def hamming(a: int, b: int) -> int:
    """Hamming distance of two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def score(ctx: ScoreContext) -> dict[str, Any]:
    """Key-frame hashes of one clip (from the sampled frames at analysis size): always
    ``phash_frames`` of them at the same relative times, frames repeating in a short clip, so
    a 1 s clip (2 sampled frames) is compared with a longer copy (3), not skipped for a
    different count."""
    small = ctx.small
    picks = evenly(len(small), ctx.cfg.phash_frames, repeat=True)
    return {"phash": [phash(small[i]) for i in picks]}
