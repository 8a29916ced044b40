"""Probe a source with PyAV: what it holds (duration, fps, frames, size, rotation, codec) and
whether its first frame decodes. A source that fails becomes a :class:`ProbeError` with a
named reason and the decoder's message.

Reasons: ``empty_file``, ``truncated_file`` (an MP4/MOV header but no readable index),
``not_a_video`` (the container cannot be read at all), ``no_video_stream`` (e.g. audio only),
``undecodable_first_frame``, ``zero_duration``; the isolation layer adds ``decode_timeout``
and ``decoder_crashed``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_FIRST_FRAME_PACKETS = 64  # packets demuxed while looking for the first decodable frame
_DAMAGED_FIRST_PACKETS = 1200  # the same after a damaged packet (the next key frame: x264's 250)
_VFR_PACKETS = 120  # packets whose timestamps decide whether the frame rate varies
_VFR_MIN_GAPS = 16  # fewer frame intervals (a file cut short) say nothing about the rate


class ProbeError(Exception):
    """A source cannot be split; ``reason`` names why, ``detail`` holds the decoder's words."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def _looks_like_mp4(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")


def normalize_rotation(deg: float | int | None) -> int:
    """Rotation in degrees, counter-clockwise, snapped to 0/90/180/270."""
    if not deg:
        return 0
    return int(round(float(deg) / 90.0)) * 90 % 360


def apply_rotation(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an (H, W, C) frame counter-clockwise by ``rotation`` degrees (multiple of 90),
    which is how players show a stream whose display matrix says so."""
    k = (rotation // 90) % 4
    return frame if k == 0 else np.ascontiguousarray(np.rot90(frame, k=k))


def probe(path: str) -> dict[str, Any]:
    """Probe ``path`` (a local file). Returns the SOURCES columns it can fill.

    Raises :class:`ProbeError` for anything that cannot be split.
    """
    import av

    size = os.path.getsize(path)
    if size == 0:
        raise ProbeError("empty_file", "0 bytes")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        reason = "truncated_file" if _looks_like_mp4(path) else "not_a_video"
        raise ProbeError(reason, f"{type(e).__name__}: {e}") from e
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise ProbeError("no_video_stream", f"streams: {', '.join(kinds) or 'none'}")
        stream = container.streams.video[0]
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        tb = float(stream.time_base) if stream.time_base else 0.0
        if stream.duration and tb:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / 1e6
        else:
            duration = 0.0
        frame_count = int(stream.frames or 0) or int(round(duration * fps))
        pts = []
        first = None
        err = ""
        try:
            for i, packet in enumerate(container.demux(stream)):
                if packet.pts is not None and len(pts) < _VFR_PACKETS:
                    pts.append(int(packet.pts))
                if first is None:
                    try:  # a damaged packet: the split skips it too, so look on
                        for fr in packet.decode():
                            first = fr
                            break
                    except (av.FFmpegError, ValueError) as e:
                        err = f"{type(e).__name__}: {e}"
                if first is not None and len(pts) >= _VFR_PACKETS:
                    break
                if first is None and i >= (_DAMAGED_FIRST_PACKETS if err else _FIRST_FRAME_PACKETS):
                    break
        except (av.FFmpegError, ValueError) as e:
            err = f"{type(e).__name__}: {e}"
        if first is None:
            raise ProbeError(
                "undecodable_first_frame", err or f"no frame in {_FIRST_FRAME_PACKETS} packets"
            )
        try:
            first.to_ndarray(format="rgb24")
        except (av.FFmpegError, ValueError) as e:
            raise ProbeError("undecodable_first_frame", f"{type(e).__name__}: {e}") from e
        if fps <= 0 or duration <= 0:
            raise ProbeError("zero_duration", f"fps={fps}, duration={duration}")
        variable = False
        frame_rate = fps  # the rate frames come at, for the split
        if len(pts) > 3:
            d = np.diff(np.sort(np.asarray(pts, np.float64)))
            d = d[d > 0]
            if len(d) >= _VFR_MIN_GAPS and np.median(d) > 0:
                off = np.abs(d - np.median(d)) > 0.25 * np.median(d)
                variable = bool(off.mean() > 0.05)  # a lone gap (a dropped frame) is not VFR
                period = float(np.median(d)) * tb
                # the frames come faster than the average says (a pause, a rate that drops
                # later): by more than a clock tick (MKV's 1 ms rounds 29.97 fps to 30.3) and 1%
                if tb and period < 1.0 / fps - tb - 0.01 / fps:
                    frame_rate = 1.0 / period
        rotation = normalize_rotation(getattr(first, "rotation", 0))
        width, height = int(cc.width or first.width), int(cc.height or first.height)
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        if sar and float(sar) > 0 and float(sar) != 1.0:  # non-square pixels (DV, HDV)
            width = max(1, round(width * float(sar)))  # the displayed width
        if rotation in (90, 270):
            width, height = height, width
        return {
            "size_bytes": size,
            "duration_s": duration,
            "fps": fps,
            "variable_fps": variable,
            "frame_count": frame_count,
            "width": width,  # as displayed (square pixels, after rotation)
            "height": height,
            "rotation": rotation,
            "codec": cc.name,
            # for the split's choice of decoder (not columns of the sources table)
            "_format": container.format.name,
            "_frame_rate": frame_rate,
            "_start_s": min(pts) * tb if pts and tb else 0.0,  # the stream's clock at its start
            "_video_streams": len(container.streams.video),
        }
