"""Text-in-frame scorer: the share of the frame covered by detected text (captions, logos,
subtitles, watermarks), with RapidOCR's text detector.

The detector's ONNX model (PP-OCRv4 det) ships inside the ``rapidocr-onnxruntime`` wheel, so
it runs offline; only detection runs (no recognition). ``text_area`` is the largest share,
over ``ocr_frames`` evenly spaced frames, of the frame covered by the union of detected text
boxes. Where the package is absent (or ``ocr`` is off) the column is null, with one warning.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from curate.score_context import ScoreContext, evenly

log = logging.getLogger(__name__)

NAME = "text"
COLUMNS = ("text_area",)

_ENGINES: dict[int, Any] = {}
_WARNED = False


def engine(max_side: int) -> Any | None:
    """The process's RapidOCR detector (loaded once), or None where the package is absent."""
    global _WARNED
    if max_side in _ENGINES:
        return _ENGINES[max_side]
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as e:
        if not _WARNED:
            log.warning("text_area is null: rapidocr-onnxruntime is not installed (%s); "
                        "pip install rapidocr-onnxruntime, or set curate.score.ocr=false", e)  # fmt: skip
            _WARNED = True
        _ENGINES[max_side] = None
        return None
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    _ENGINES[max_side] = RapidOCR(
        det_limit_side_len=max_side, det_limit_type="max",
        intra_op_num_threads=1, inter_op_num_threads=1,
    )  # fmt: skip
    return _ENGINES[max_side]


def text_area(rgb: np.ndarray, max_side: int = 320) -> float | None:
    """Share of one RGB frame covered by detected text boxes (None without the detector)."""
    eng = engine(max_side)
    if eng is None:
        return None
    boxes, _ = eng(np.ascontiguousarray(rgb[..., ::-1]), use_det=True, use_cls=False,
                   use_rec=False)  # fmt: skip
    if not boxes:
        return 0.0
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for box in boxes:
        cv2.fillPoly(mask, [np.round(np.asarray(box, np.float32)).astype(np.int32)], 1)
    return float(mask.mean())


def score(ctx: ScoreContext) -> dict[str, Any]:
    """Text area of one clip (null when OCR is off or unavailable)."""
    cfg = ctx.cfg
    if not cfg.ocr:
        return {"text_area": None}
    full = ctx.sampled_full
    vals = [text_area(full[i], cfg.ocr_max_side) for i in evenly(len(full), cfg.ocr_frames)]
    if any(v is None for v in vals):
        return {"text_area": None}
    return {"text_area": float(max(vals))}
