"""Gallery thumbnails: a strip of evenly spaced frames of a clip, as an inline PNG."""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHOWN_SCORES = (
    "motion", "sharpness", "luma_mean", "dark_frac", "bright_frac", "colorfulness", "static_frac",
    "camera_motion", "text_area", "aesthetic", "nsfw", "alignment",
)  # fmt: skip
"""Row fields a gallery card shows when present."""


def frame_strip(video: bytes, num_frames: int | None, frames: int = 4, height: int = 72) -> str:
    """A PNG strip (``data:`` URI) of ``frames`` evenly spaced frames of an MP4."""
    from PIL import Image

    from common.video import decode_mp4

    if num_frames and num_frames > 0:
        idx = sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, frames)})
        try:
            arr = decode_mp4(video, indices=idx)
        except (IndexError, ValueError):
            arr = None
    else:
        arr = None
    if arr is None:
        allf = decode_mp4(video)
        idx = sorted({int(round(x)) for x in np.linspace(0, len(allf) - 1, frames)})
        arr = allf[idx]
    h, w = arr.shape[1:3]
    tw = max(1, int(round(w * height / h)))
    tiles = [Image.fromarray(f).resize((tw, height), Image.BILINEAR) for f in arr]
    gap = 2
    strip = Image.new("RGB", (len(tiles) * tw + gap * (len(tiles) - 1), height), (255, 255, 255))
    for i, t in enumerate(tiles):
        strip.paste(t, (i * (tw + gap), 0))
    buf = io.BytesIO()
    strip.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def card(
    row: dict[str, Any], video: bytes | None, frames: int, height: int, note: str = ""
) -> dict[str, Any]:
    """A gallery entry: identifiers, scores, reason / caption, and the strip when bytes exist."""
    thumb, why = None, note
    if video:
        try:
            thumb = frame_strip(video, row.get("num_frames"), frames, height)
        except Exception as e:  # noqa: BLE001 - a clip that does not decode is shown as such
            why = f"could not decode the clip: {type(e).__name__}: {e}"
            log.warning("gallery: %s: %s", row.get("clip_id"), why)
    elif not why:
        why = "no video bytes stored for this row"
    out = {
        k: row.get(k)
        for k in ("clip_id", "source_path", "start_s", "end_s", "width", "height", "stage",
                  "reason", "detail", "value", "kept_clip_id", "caption", "caption_source")
        if row.get(k) is not None
    }  # fmt: skip
    scores = {k: row[k] for k in SHOWN_SCORES if row.get(k) is not None}
    return {**out, "scores": scores, "thumb": thumb, "thumb_note": why if not thumb else note}
