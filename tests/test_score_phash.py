"""Perceptual hashes survive re-encoding and rescaling; different content differs."""

from __future__ import annotations

import cv2
import numpy as np

from common.video import decode_mp4, encode_mp4
from curate.score_config import ScoreConfig
from curate.score_phash import hamming, phash
from curate.scoring import score_frames
from curate.synthetic import Shot, render_shot

CFG = ScoreConfig(ocr=False)


def test_phash_robust_to_reencode_and_resize():
    src = np.stack(list(render_shot(Shot(kind="pan", seconds=1.5, background=21), 192, 112, 12.0)))
    small = np.stack([cv2.resize(f, (128, 74), interpolation=cv2.INTER_AREA) for f in src])
    copy = decode_mp4(encode_mp4(small, 12.0, crf=40))
    a = score_frames(src, 12.0, CFG)["phash"]
    b = score_frames(copy, 12.0, CFG)["phash"]
    assert len(a) == len(b) == CFG.phash_frames
    assert all(0 <= h < 2**64 for h in a)
    assert max(hamming(x, y) for x, y in zip(a, b, strict=True)) <= 6
    other = np.stack(
        list(render_shot(Shot(kind="pan", seconds=1.5, background=22), 192, 112, 12.0))
    )
    c = score_frames(other, 12.0, CFG)["phash"]
    assert min(hamming(x, y) for x, y in zip(a, c, strict=True)) > 12


def test_phash_of_flat_frame_is_stable():
    f = np.full((32, 48, 3), 90, np.uint8)
    assert phash(f) == phash(f.copy())
