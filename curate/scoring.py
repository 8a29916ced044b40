"""Weight-free scoring of one clip's frames: decode once, score many.

``score_frames`` is called inside the split stage on the frames it has just decoded and
encoded: it samples them at ``sample_fps``, downsizes them once for analysis
(``ScoreContext``) and runs every weight-free scorer on that shared context — the Farneback
flow is computed once and shared by the motion and camera scorers. Each scorer is one module
with the same interface: ``NAME``, ``COLUMNS`` and ``score(ctx) -> dict``.

``key_frames`` gives the JPEG key frames the model scorers (open_clip, aesthetic, NSFW)
consume downstream, so no stage re-opens the video.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import cv2
import numpy as np

from curate import (
    score_camera,
    score_color,
    score_exposure,
    score_motion,
    score_phash,
    score_sharpness,
    score_text,
)
from curate.score_config import ScoreConfig
from curate.score_context import ScoreContext, evenly, resize_short

SCORERS = (score_motion, score_camera, score_sharpness, score_exposure, score_color, score_phash,
           score_text)  # fmt: skip
"""The weight-free scorers, run in this order on one shared context."""

WEIGHT_FREE_COLUMNS = tuple(c for s in SCORERS for c in s.COLUMNS)
"""Score columns ``score_frames`` returns."""

TIMINGS: dict[str, float] = defaultdict(float)
"""Seconds spent per scorer in this process (``sample`` = sampling + resize + luma; ``flow`` =
Farneback + camera fit). Read by benchmarks/score_throughput.py."""


def score_frames(frames: np.ndarray, fps: float, cfg: ScoreConfig) -> dict[str, Any]:
    """Every weight-free score of one clip from its decoded frames (T, H, W, 3) uint8 RGB."""
    t0 = time.perf_counter()
    ctx = ScoreContext(np.asarray(frames), float(fps), cfg)
    _ = ctx.gray
    t1 = time.perf_counter()
    TIMINGS["sample"] += t1 - t0
    if len(ctx.pairs):
        _ = ctx.global_motion
    t0 = time.perf_counter()
    TIMINGS["flow"] += t0 - t1
    out: dict[str, Any] = {}
    for scorer in SCORERS:
        out.update(scorer.score(ctx))
        t1 = time.perf_counter()
        TIMINGS[scorer.NAME] += t1 - t0
        t0 = t1
    return out


def key_frames(frames: np.ndarray, fps: float, cfg: ScoreConfig) -> list[bytes]:
    """``model_frames`` evenly spaced frames, short side ``model_frame_size``, as JPEG bytes."""
    frames = np.asarray(frames)
    out = []
    for i in evenly(len(frames), cfg.model_frames):
        img = resize_short(frames[i], cfg.model_frame_size)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 92])  # fmt: skip
        if not ok:
            raise ValueError("JPEG encoding of a key frame failed")
        out.append(buf.tobytes())
    return out


def decode_key_frame(jpeg: bytes) -> np.ndarray:
    """A key frame's JPEG bytes back to (H, W, 3) uint8 RGB."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("key frame is not a decodable JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
