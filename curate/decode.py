"""Decoding a source for the split: every frame once, in display order, at the output size,
timed in seconds from the stream's start, with damaged stretches skipped and reported.

decord is the fast path (it resizes while decoding); PyAV decodes what decord reads wrongly
(``choose_decoder``) and takes over where decord fails mid-stream (``decode_frames``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from curate.probe import apply_rotation

log = logging.getLogger(__name__)

_DECORD_BATCH = 32


def formats(info: dict[str, Any]) -> set[str]:
    """The container's format names from ``probe``'s info (``"mov,mp4,m4a,..."``)."""
    return set(str(info.get("_format") or "").split(","))


def _frames_decord(path: str, w: int, h: int) -> Iterator[tuple[float, np.ndarray]]:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=1)
    n = len(vr)
    for s in range(0, n, _DECORD_BATCH):
        idx = list(range(s, min(n, s + _DECORD_BATCH)))
        ts = vr.get_frame_timestamp(idx)[:, 0]
        batch = vr.get_batch(idx).asnumpy()
        for t, f in zip(ts, batch, strict=True):
            yield round(float(t), 6), f  # decord gives float32 seconds


def _frames_pyav(
    path: str, w: int, h: int, errors: list[str] | None = None, untimed: bool = False
) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of the first video stream (the one ``probe`` describes), times in seconds from
    the stream's start (as decord counts them; a stream may start at 10 s, an MPEG-TS at 0.17).

    A packet the decoder rejects (a damaged stretch of the file) is skipped and its error
    appended to ``errors``; frames come again from the next key frame decoded after it,
    those before it in display order dropped (built on the lost data: smeared or out of
    order), so a damaged stretch costs at most the rest of its group of pictures; frames the
    decoder never returns at the end (an error swallowed at the flush) are an error too.
    Without ``errors`` it raises (and logs the frames lost in the flush). ``untimed``: frame
    times are positions over the rate, not the container's (and a damaged packet raises:
    nothing places the frames after it).
    """
    import av

    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        top = None
        # the stream's clock at its start, so a damaged first stretch shifts no time after it
        start = (
            float(stream.start_time * stream.time_base)
            if stream.start_time is not None and stream.time_base
            else None
        )
        t0 = None
        i = 0  # frames decoded
        sent = 0  # packets decoded whole since the first key frame: each owes a frame
        keyed = False  # the decoder drops what comes before the first key frame, silently
        hurt = False  # a packet failed (``errors`` is the caller's: it may clear it)
        damaged = False  # a packet failed, and no key frame has decoded since
        clean_from = None  # the first whole frame's pts after a damaged stretch
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as e:
                if errors is None or untimed:  # untimed: no clock to place what comes after
                    raise
                errors.append(f"{type(e).__name__}: {e}")
                hurt, damaged, clean_from = True, True, None
                continue
            keyed = keyed or packet.is_keyframe
            sent += keyed and packet.size > 0 and not packet.is_discard
            if damaged and packet.is_keyframe and packet.pts is not None:
                damaged, clean_from = False, packet.pts
            for frame in frames:
                t = (
                    float(frame.time)
                    if frame.time is not None and not untimed
                    else i / float(stream.average_rate or 25)
                )
                i += 1
                sent -= 1
                if hurt and (
                    damaged
                    or (clean_from is not None and frame.pts is not None and frame.pts < clean_from)
                    or (top is not None and top - STALE_S < t <= top)
                ):
                    continue  # built on the damaged stretch, or a stale frame from before it
                clean_from = None  # the key frame is out: what precedes it in display order too
                t0 = (t if start is None else min(t, start)) if t0 is None else t0
                top = t  # later than the last, or a restarted clock
                rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
                yield round(t - t0, 6), rgb
        if sent > 0 and not hurt:  # (after a damaged stretch, frames without references)
            msg = f"{sent} {UNRETURNED}"
            if errors is None:
                log.warning("%s: %s", path, msg)
            else:
                errors.append(msg)


UNRETURNED = "frame(s) the decoder never returned at the end"
"""The error :func:`_frames_pyav` records for frames lost in the decoder's flush (an error it
swallowed there): at a cut file's end they go with the truncation; elsewhere, a decode_error."""

STALE_S = 1.0
"""After a damaged stretch, a frame up to this much before the latest one shown is a stale
frame from the decoder's reorder queue and is dropped; further back, the clock restarted (two
takes joined) and the frame is kept (the split makes it a cut)."""

PYAV_FORMATS = frozenset({"mpegts", "mpeg", "flv"})
"""Containers decoded with PyAV whatever ``decoder`` says: without a seek index, decord
returned frames from the wrong place (an MPEG-TS clip started 16-32 frames late)."""


UNTIMED_FORMATS = frozenset({"avi"})
"""Containers whose frame times are not to be trusted (AVI has none: PyAV's guesses jumped back
and forth with B-frames, decord's came out near -3.7e17 s): decoded with PyAV, frames counted
at the rate."""

DECORD_MAX_S = 2048.0
"""decord gives float32 seconds, computed from the stream's own clock: past this (a long file,
or one remuxed from a live stream whose clock starts at 40000 s) they are off by more than the
millisecond the split's timing needs (4 ms at 40000 s), so such sources go to PyAV."""


def choose_decoder(info: dict[str, Any], decoder: str) -> str:
    """``decoder``, or ``pyav`` where decord would read the wrong frames or times: a container
    without a seek index, more than one video stream (decord picks its own, not the probed
    one), timestamps before 0 (an edit list trims the start: decord returns the trimmed frames'
    times against other frames) or past ``DECORD_MAX_S``, or none (``UNTIMED_FORMATS``)."""
    if decoder != "decord":
        return decoder
    start = float(info.get("_start_s") or 0.0)
    if (
        formats(info) & (PYAV_FORMATS | UNTIMED_FORMATS)
        or int(info.get("_video_streams") or 1) > 1
        or start < 0
        or start + float(info.get("duration_s") or 0.0) > DECORD_MAX_S
    ):
        return "pyav"
    return decoder


def decode_frames(
    path: str,
    width: int,
    height: int,
    rotation: int,
    decoder: str,
    errors: list[str] | None = None,
    untimed: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB frame) for every frame in order, as displayed: rotated by the
    stream's display matrix and resized to ``width`` x ``height`` (displayed orientation).

    decord rotates by itself and resizes after rotating; PyAV frames are resized in stored
    orientation, then rotated here. With ``errors`` given, a damaged stretch does not end the
    stream: its error is appended there and the frames after it follow (decord hands over to
    PyAV past its last frame; PyAV skips the packets it cannot decode).
    """
    last = None
    if decoder == "decord":
        try:
            for t, frame in _frames_decord(path, width, height):
                yield t, frame
                last = t
            return
        except Exception as e:  # decord raises its own error types; PyAV is the fallback
            if last is not None and errors is None:
                raise
            # PyAV goes on past the last frame (and reports what it cannot decode either)
            log.debug("decord cannot read %s (%s); PyAV from %s s", path, e, last or 0)
    w, h = (height, width) if rotation in (90, 270) else (width, height)
    for t, frame in _frames_pyav(path, w, h, errors, untimed):
        if last is None or t > last + 1e-3:
            yield t, apply_rotation(frame, rotation)
