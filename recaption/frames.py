"""Frame preparation (CPU workers): decode a clip's ``video`` bytes, sample N frames, resize.

Runs as its own Ray Data map stage before the caption actors so a GPU replica only ever
receives ready frames. Frames travel as raw uint8 bytes (``_frames``) with their shape
(``_frames_shape`` = [T, H, W, 3]); a clip that cannot be decoded gets ``_prep_error``.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from common.video import decode_mp4

log = logging.getLogger(__name__)

FRAME_COLUMNS = ("_frames", "_frames_shape", "_prep_error")
"""Columns this stage adds (dropped before anything is written)."""


def sample_indices(num_frames: int, n: int) -> list[int]:
    """``n`` frame indices spread uniformly over ``num_frames`` (first and last included)."""
    if num_frames <= 0:
        return []
    n = max(1, min(int(n), int(num_frames)))
    if n == 1:
        return [num_frames // 2]
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, n)})


def fit_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(w, h) with the longest side at most ``longest`` (never upscaled), both even."""
    scale = min(1.0, float(longest) / max(width, height, 1))
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def sample_frames(
    video: bytes, num_frames: int, width: int, height: int, n: int, longest: int
) -> np.ndarray:
    """Decode ``n`` uniformly spaced frames of an encoded clip, resized to fit ``longest``."""
    idx = sample_indices(num_frames, n)
    size = fit_size(width, height, longest)
    try:
        return decode_mp4(video, indices=idx, size=size)
    except IndexError:
        # the stored num_frames overstates the stream: sample from what is there
        frames = decode_mp4(video, size=size)
        return frames[sample_indices(len(frames), n)]


def frames_to_column(frames: np.ndarray) -> tuple[bytes, list[int]]:
    """Raw bytes and shape of a (T, H, W, 3) uint8 array."""
    arr = np.ascontiguousarray(frames, dtype=np.uint8)
    return arr.tobytes(), list(arr.shape)


def frames_from_row(data: bytes | None, shape: list[int] | None) -> np.ndarray | None:
    """The (T, H, W, 3) array back from ``_frames`` / ``_frames_shape`` (None if absent)."""
    if data is None or not shape:
        return None
    return np.frombuffer(data, dtype=np.uint8).reshape([int(s) for s in shape])


def prepare_batch(batch: pa.Table, num_frames: int, longest: int) -> pa.Table:
    """Map stage: add ``_frames``, ``_frames_shape``, ``_prep_error`` to every clip row."""
    data, shapes, errors = [], [], []
    videos = batch.column("video").to_pylist()
    nf = batch.column("num_frames").to_pylist()
    ws, hs = batch.column("width").to_pylist(), batch.column("height").to_pylist()
    ids = batch.column("clip_id").to_pylist()
    for cid, video, n, w, h in zip(ids, videos, nf, ws, hs, strict=True):
        try:
            if not video:
                raise ValueError("empty video bytes")
            frames = sample_frames(video, int(n), int(w), int(h), num_frames, longest)
            raw, shape = frames_to_column(frames)
            data.append(raw)
            shapes.append(shape)
            errors.append(None)
        except Exception as e:  # noqa: BLE001 - any decoder failure becomes a reject row
            log.warning("clip %s: frames could not be decoded: %s", cid, e)
            data.append(None)
            shapes.append(None)
            errors.append(f"{type(e).__name__}: {e}")
    batch = batch.append_column("_frames", pa.array(data, pa.binary()))
    batch = batch.append_column("_frames_shape", pa.array(shapes, pa.list_(pa.int32())))
    return batch.append_column("_prep_error", pa.array(errors, pa.string()))
