"""Camera-motion scorer: the class of the camera's movement, from the shared flow field.

A similarity model (translation, zoom, rotation) is fitted robustly to each sample pair's
Farneback flow (``ScoreContext.global_motion``; moving objects are outliers). Over the clip:
``static`` when the median camera motion is below ``camera_min_motion``; ``shaky`` when the
per-pair translation spreads more than ``camera_shaky`` and more than its mean; else the
largest of translation (pan left/right when horizontal, tilt up/down when vertical) and zoom
(in/out). The camera moves opposite to the content: content moving left is a pan right.
``camera_confidence`` is the share of sample pairs whose own class agrees with the clip's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate.score_context import ScoreContext

NAME = "camera"
COLUMNS = ("camera_motion", "camera_confidence")


def classify(tx: float, ty: float, zoom: float, min_motion: float) -> str:
    """Class of one camera motion (content translation tx, ty and edge zoom, px/frame)."""
    trans = float(np.hypot(tx, ty))
    if max(trans, abs(zoom)) < min_motion:
        return "static"
    if abs(zoom) > trans:
        return "zoom_in" if zoom > 0 else "zoom_out"
    if abs(tx) >= abs(ty):
        return "pan_right" if tx < 0 else "pan_left"
    return "tilt_up" if ty > 0 else "tilt_down"


def score(ctx: ScoreContext) -> dict[str, Any]:
    """Camera columns of one clip."""
    cfg = ctx.cfg
    if len(ctx.pairs) == 0:
        return {"camera_motion": "static", "camera_confidence": 0.0}
    gm = ctx.global_motion
    per_pair = [
        classify(gm.tx[i], gm.ty[i], gm.zoom[i], cfg.camera_min_motion) for i in range(len(gm.tx))
    ]
    mtx, mty, mzoom = float(np.median(gm.tx)), float(np.median(gm.ty)), float(np.median(gm.zoom))
    label = classify(mtx, mty, mzoom, cfg.camera_min_motion)
    spread = float(np.hypot(gm.tx.std(), gm.ty.std())) if len(gm.tx) > 2 else 0.0
    mean_t = float(np.hypot(gm.tx.mean(), gm.ty.mean()))
    if spread > cfg.camera_shaky and spread > mean_t:
        moving = np.mean([p != "static" for p in per_pair])
        return {"camera_motion": "shaky", "camera_confidence": float(moving)}
    agree = float(np.mean([p == label for p in per_pair]))
    return {"camera_motion": label, "camera_confidence": agree}
