"""Text area through RapidOCR's bundled detector (offline)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from curate.score_config import ScoreConfig
from curate.scoring import score_frames

pytest.importorskip("rapidocr_onnxruntime", reason="rapidocr-onnxruntime is not installed")


def clip(text: str | None) -> np.ndarray:
    f = np.full((112, 192, 3), 50, np.uint8)
    if text:
        cv2.putText(f, text, (8, 64), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return np.stack([f] * 8)


def test_text_area_found_and_absent():
    cfg = ScoreConfig()
    with_text = score_frames(clip("BREAKING NEWS"), 12.0, cfg)["text_area"]
    without = score_frames(clip(None), 12.0, cfg)["text_area"]
    assert without == 0.0
    assert 0.05 < with_text < 0.5


def test_ocr_off_gives_null():
    assert score_frames(clip("HELLO"), 12.0, ScoreConfig(ocr=False))["text_area"] is None
