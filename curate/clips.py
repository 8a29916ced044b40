"""Clips: one decoding pass over a source yields scene cuts, spans and the re-encoded clips.

Each frame is decoded once at the output size (``curate.decode``: decord resizes on decode,
PyAV where decord cannot), fed downscaled to PySceneDetect, and — when it falls on the output
frame-rate grid — kept in a bounded buffer until the span planner (``curate.scenes``) hands out
a span. The grid is laid on the frames' timestamps: where a variable-frame-rate source (or a
dropped frame) leaves output slots without a frame, the frame shown at that time fills them, as
a player shows it, so a clip plays at its real speed; a pause is a cut (``GAP_CUT_S``). The span's
frames are rotated, encoded to H.264/MP4 (``common.video.encode_mp4``) and scored right away
(``curate.scoring.score_frames`` on the same frames: decode once).

:func:`process_source` is the per-source stage: probe and split run in an isolated child
process (``curate.isolation``), so a hang or a crash is a reject row, never a dead job.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

import numpy as np

from curate.config import CurateConfig, clip_config_hash
from curate.decode import UNRETURNED, UNTIMED_FORMATS, choose_decoder, decode_frames, formats
from curate.isolation import DecoderCrashed, DecodeTimeout, runner
from curate.probe import ProbeError, probe
from curate.scenes import SpanPlanner, make_detector, mean_luma

log = logging.getLogger(__name__)


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side at most ``short_side``, never upscaled, both even."""
    s = min(1.0, short_side / max(1, min(width, height)))
    w = max(2, int(width * s + 1e-6) // 2 * 2)
    h = max(2, int(height * s + 1e-6) // 2 * 2)
    return w, h


def clip_id(source_id: str, start_frame: int, end_frame: int, cfg_hash: str) -> str:
    """Stable id of a clip: sha256 of its source, source-frame span and clip config, hex[:32]."""
    key = f"{source_id}:{start_frame}:{end_frame}:{cfg_hash}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def resample_slot(t: float, t0: float, out_fps: float, src_fps: float) -> int:
    """Output frame slot of a source frame shown at ``t`` (first frame at ``t0``).

    The first source frame of each slot is kept. A frame up to half a source period before
    an output tick counts for that tick, so rounded timestamps (decord's float32 seconds,
    1/12 s as 0.083333) neither drop frames of a source already at ``out_fps`` nor skew
    which frames a slower output keeps.
    """
    return math.floor((t - t0) * out_fps + 0.5 * min(1.0, out_fps / src_fps))


def _scorers(cfg: CurateConfig):
    """(score_frames, key_frames or None) from ``curate.scoring``; (None, None) if absent."""
    try:
        from curate.scoring import key_frames, score_frames
    except ImportError as e:
        log.debug("curate.scoring unavailable (%s): clips carry no scores", e)
        return None, None
    wants_keys = bool(getattr(cfg.score, "model_scorers_enabled", False))
    return score_frames, (key_frames if wants_keys else None)


def split_source(
    path: str, source_id: str, source_path: str, info: dict[str, Any], cfg: CurateConfig
) -> list[dict[str, Any]]:
    """Cut one probed source into clip rows (``_kind=clip``) and drop rows (``_kind=reject``)."""
    from scenedetect import FrameTimecode

    from common.video import encode_mp4

    rot = int(info.get("rotation") or 0)
    out_w, out_h = output_size(int(info["width"]), int(info["height"]), cfg.short_side)
    # the frames' typical rate: the average of a variable-rate stream or one with a pause
    # understates it (12 fps footage with a 5 s pause averages 5.3 fps)
    src_fps = float(info.get("_frame_rate") or info["fps"])
    out_fps = min(cfg.fps, src_fps)
    det_scale = min(1.0, cfg.detect_width / out_w)
    det_size = (max(16, int(out_w * det_scale)), max(16, int(out_h * det_scale)))
    detector = make_detector(cfg, src_fps)
    planner = SpanPlanner(cfg, src_fps)
    cfg_hash = clip_config_hash(cfg)
    score_frames, key_frames = _scorers(cfg)
    import cv2

    rows: list[dict[str, Any]] = []
    times = planner.times  # when each frame is shown (seconds)
    buf: dict[int, tuple[np.ndarray, int]] = {}  # source frame -> (RGB, output slots it fills)
    base = {"source_id": source_id, "source_path": source_path}

    def emit(span) -> None:
        start_s, end_s = planner.time(span.start), planner.end_time(span.end)
        if span.kind != "clip":
            rows.append({**base, "_kind": "reject", "stage": "scenes", "reason": span.kind,
                         "detail": f"{end_s - start_s:.2f}s span (min_seconds={cfg.min_seconds})"
                         if span.kind == "scene_too_short" else "dark frames or a fade ramp",
                         "start_s": start_s, "end_s": end_s})  # fmt: skip
            return
        kept = [
            f for k in sorted(buf) if span.start <= k < span.end for f in [buf[k][0]] * buf[k][1]
        ]
        if not kept:  # a span shorter than one output frame period (or a gap in timestamps)
            rows.append({**base, "_kind": "reject", "stage": "scenes", "reason": "scene_too_short",
                         "detail": f"{end_s - start_s:.2f}s span holds no frame of the "
                                   f"{out_fps:g} fps output",
                         "start_s": start_s, "end_s": end_s})  # fmt: skip
            return
        frames = np.stack(kept)
        cid = clip_id(source_id, span.start, span.end, cfg_hash)
        row = {**base, "clip_id": cid, "start_s": start_s, "end_s": end_s}
        try:
            video = encode_mp4(frames, out_fps, crf=cfg.crf, threads=1)
        except Exception as e:  # noqa: BLE001 - any encoder failure is a named reject
            rows.append({**row, "_kind": "reject", "stage": "clip", "reason": "encode_failed",
                         "detail": f"{type(e).__name__}: {e}"})  # fmt: skip
            return
        row.update(_kind="clip", scene_index=scene_of(span.start), fps=out_fps,
                   num_frames=len(frames), width=frames.shape[2], height=frames.shape[1],
                   video=video)  # fmt: skip
        if score_frames is not None:
            try:
                row.update(score_frames(frames, out_fps, cfg.score))
                if key_frames is not None:
                    row["_key_frames"] = list(key_frames(frames, out_fps, cfg.score))
            except Exception as e:  # noqa: BLE001 - a scorer failure is a named reject
                rows.append({**row, "_kind": "reject", "stage": "score", "reason": "score_failed",
                             "detail": f"{type(e).__name__}: {e}", "video": None})  # fmt: skip
                return
        rows.append(row)

    def scene_of(frame: int) -> int:
        return sum(1 for c in planner.boundary if c <= frame)  # detector cuts and breaks

    last_slot = -1
    t0 = None
    i = -1
    expected = float(info.get("duration_s") or 0.0)
    prev: np.ndarray | None = None  # the frame before this one
    untimed = bool(formats(info) & UNTIMED_FORMATS)
    errors: list[str] = []  # the decoder's errors since the last frame (a damaged stretch)
    lost_tail = False  # decoding ended in an error: the rest has its decode_error row

    def lost(reason: str, detail: str, start: float, end: float | None) -> None:
        """A reject row for footage of the source that is in no clip (stage ``clip``)."""
        rows.append({**base, "_kind": "reject", "stage": "clip", "reason": reason,
                     "detail": detail, "start_s": start, "end_s": end})  # fmt: skip

    def damaged(start: float, end: float | None, where: str, also: str = "") -> None:
        """A decode_error row for the decoder's errors since the last frame (and ``also``)."""
        bad = [e for e in errors if UNRETURNED not in e]
        said = [f"{len(bad)} undecodable packet(s): {bad[0]}"] if bad else []
        said += [e for e in errors if UNRETURNED in e] + ([also] if also else [])
        lost("decode_error", f"{where}: {'; '.join(said)}", start, end)
        errors.clear()

    try:
        decoder = choose_decoder(info, cfg.decoder)
        frames_in = decode_frames(path, out_w, out_h, rot, decoder, errors, untimed)
        for i, (t, rgb) in enumerate(frames_in):
            gap_start = planner.end_time(len(times)) if times else 0.0
            # bilinear, as PySceneDetect's own downscaling: INTER_AREA at a non-integer ratio
            # cost more than the detector itself (852x480 -> 256x144: 1.09 ms against 0.07 ms
            # per frame) and found the same cuts in the benchmark's footage
            small = (
                rgb
                if det_scale >= 1.0
                else cv2.resize(rgb, det_size, interpolation=cv2.INTER_LINEAR)
            )
            # on the planner's timeline: a pause or a jump back in the timestamps is a cut
            t = planner.add_frame(mean_luma(small), t)
            t0 = t if t0 is None else t0
            if errors:  # a damaged stretch was skipped before this frame: lost, and a cut
                damaged(gap_start, max(gap_start, t), f"before frame {i}")
                planner.add_break(i)
            elif i == 0 and t > 1.5 / src_fps:  # nothing decodable from the stream's start
                lost("timestamp_gap", f"no frame before {t:.2f}s (the stream starts without a "
                     "key frame, or its first frames are missing)", 0.0, t)  # fmt: skip
            elif i in planner.breaks and t - gap_start > 1e-3:  # no frame for a while: a cut
                lost("timestamp_gap", f"no frame for {t - gap_start:.2f}s (a paused recording, "
                     "or a stretch the demuxer dropped)", gap_start, t)  # fmt: skip
            for c in detector.process_frame(FrameTimecode(i, fps=src_fps), small):
                planner.add_cut(c.frame_num)
            slot = resample_slot(t, t0, out_fps, src_fps)
            if slot > last_slot:
                if last_slot >= 0 and slot > last_slot + 1 and i not in planner.breaks:
                    # no frame in the slots between: the frame before is still on screen
                    rgb_prev, n_prev = buf.get(i - 1, (prev, 0))
                    buf[i - 1] = (rgb_prev, n_prev + slot - last_slot - 1)
                buf[i] = (rgb, 1)
                last_slot = slot
            prev = rgb
            for span in planner.advance():
                emit(span)
            hold = planner.hold_from
            for k in [k for k in buf if k < hold]:
                del buf[k]
    except Exception as e:  # noqa: BLE001 - a mid-stream decode error keeps what came before
        # the rest of the source is lost: from the end of the last frame decoded
        start = planner.end_time(len(times)) if times else 0.0
        # nothing was left (on a restarted clock, the container's duration is one take's)
        if times and expected and start >= expected - 1.0 / src_fps and not planner.restarted:
            log.warning("%s: decoder error after its last frame: %s", source_path, e)
            errors.clear()
        else:
            damaged(start, expected if expected > start else None, f"after frame {i}",
                    f"then {type(e).__name__}: {e}")  # fmt: skip
        lost_tail = True
    decoded = planner.end_time(len(times)) if times else 0.0
    # the stream ended early (a file cut short with its index up front): the footage after it
    # is lost, and said so (within 1 s or 1%: the container's duration may count a longer
    # audio track)
    short = not lost_tail and expected - decoded > max(1.0, 0.01 * expected)
    note = ""
    if errors and short and all(UNRETURNED in e for e in errors):
        note = f"; then {errors[0]}"  # the frames cut off mid-packet go with the truncation
        errors.clear()
    elif errors:  # the damaged stretch ran to the end: its row covers the rest
        damaged(decoded, expected if expected > decoded else None, f"after frame {i}")
        short = False
    if short:
        lost("truncated_stream", f"decoded {len(times)} frames, {decoded:.2f}s of the "
             f"{expected:.2f}s the container declares{note}", decoded, expected)  # fmt: skip
    if times:
        for c in detector.post_process(FrameTimecode(len(times) - 1, fps=src_fps)) or []:
            planner.add_cut(c.frame_num)
    for span in planner.finish():
        emit(span)
    return rows


def failed_source(
    src_row: dict[str, Any], stage: str, reason: str, detail: str
) -> list[dict[str, Any]]:
    """A source that yields no clip: its ``src_row`` marked failed (``error`` = reason: detail)
    and the one reject row naming why."""
    src_row.update(_kind="source", status="failed", error=f"{reason}: {detail}", num_clips=0)
    base = {"source_id": src_row["source_id"], "source_path": src_row["source_path"]}
    return [src_row, {**base, "_kind": "reject", "stage": stage, "reason": reason,
                      "detail": detail}]  # fmt: skip


def process_source(
    local_path: str, source_id: str, source_path: str, size: int, cfg: CurateConfig
) -> list[dict[str, Any]]:
    """Probe then split one source in the isolated child; returns all of its rows, always
    including exactly one ``_kind=source`` row (status ok or failed)."""
    src_row: dict[str, Any] = {
        "_kind": "source", "source_id": source_id, "source_path": source_path,
        "size_bytes": size, "status": "ok",
    }  # fmt: skip

    def failed(stage: str, reason: str, detail: str) -> list[dict[str, Any]]:
        return failed_source(src_row, stage, reason, detail)

    run = runner()
    try:
        info = run.call(probe, local_path, timeout=cfg.probe_timeout_s)
    except ProbeError as e:
        return failed("probe", e.reason, e.detail)
    except DecodeTimeout as e:
        return failed("probe", "decode_timeout", str(e))
    except DecoderCrashed as e:
        return failed("probe", "decoder_crashed", str(e))
    except Exception as e:  # noqa: BLE001 - e.g. the file vanished since it was listed
        return failed("probe", "probe_error", f"{type(e).__name__}: {e}")
    src_row.update(info)
    timeout = cfg.split_timeout_s + cfg.split_timeout_per_video_s * float(info["duration_s"])
    try:
        rows = run.call(
            split_source, local_path, source_id, source_path, info, cfg, timeout=timeout
        )
    except DecodeTimeout as e:
        return failed("clip", "decode_timeout", str(e))
    except DecoderCrashed as e:
        return failed("clip", "decoder_crashed", str(e))
    except Exception as e:  # noqa: BLE001 - an unexpected error in one source is a reject
        log.exception("splitting %s failed", source_path)
        return failed("clip", "split_error", f"{type(e).__name__}: {e}")
    src_row["num_clips"] = sum(1 for r in rows if r["_kind"] == "clip")
    end = max((float(r["end_s"]) for r in rows if r.get("end_s") is not None), default=0.0)
    if end > float(src_row["duration_s"]) + 1.0:  # a clock that restarted (takes joined): the
        # container declares the first take's length; the timeline the rows are on is longer
        src_row["duration_s"] = end
        src_row["frame_count"] = max(int(src_row["frame_count"]), round(end * src_row["fps"]))
    return [src_row, *rows]
