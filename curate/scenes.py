"""Scenes: PySceneDetect cuts on downscaled frames, dark stretches and fades, and the plan of
clip spans (``min_seconds`` .. ``max_seconds``, trimmed at every cut).

The plan is built online, one frame at a time, so a source is decoded once and only a
bounded window of frames is held: a frame's fate is final ``horizon`` frames after it was
seen (the detector's reporting lag plus the longest fade ramp), and a clip span is handed out
as soon as all its frames are final. Long scenes are cut greedily into ``max_seconds``
chunks from the scene's first usable frame; a leftover shorter than ``min_seconds`` is a drop.

Spans are measured in the frames' own timestamps, so ``min_seconds``/``max_seconds`` hold for a
variable-frame-rate source too (a phone slowing to 15 fps in low light holds fewer frames per
second than its average rate says); frame counts (fades, trims, the detector's lag) use the
rate the planner is given (the split gives the frames' typical rate). A pause in the timestamps
(over ``GAP_CUT_S``) is a cut, and so is a jump back (two streams joined, a reset clock): the
timeline goes on one period after the frame before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from curate.config import CurateConfig

log = logging.getLogger(__name__)

GOOD, DARK, CUT = 0, 1, 2  # per-frame marks
TIME_TOLERANCE_S = 1e-3
"""Slack on ``min_seconds``/``max_seconds``: timestamps come as float seconds (decord's are
float32, 0.5 ms apart at two hours), far below a frame period."""
GAP_CUT_S = 1.0
"""A pause between two frames' timestamps longer than this (and than 4 frame periods)
is a cut, not a frame held: a recording paused or two takes spliced."""


@dataclass(frozen=True)
class Span:
    """A planned span of source frames ``[start, end)``: a clip, or a piece that was dropped."""

    start: int
    end: int
    kind: str
    """``clip``, ``scene_too_short`` (a usable piece under min_seconds) or ``dark_or_fade``."""


class _RgbFrameScore:
    """PySceneDetect's content score (``ContentDetector._calculate_frame_score``) from RGB
    frames, in one OpenCV pass per frame.

    The stock score converts BGR to HSV, splits the channels and takes each channel's mean
    absolute difference in numpy (int32 copies): ~120 us a frame at 228x128 here, five times
    the rest of the detector's work. The same sums from ``cv2.absdiff`` and ``cv2.sumElems``
    on the HSV frame are exact integers, so the scores are the same floats
    (``tests/test_scenes.py::test_rgb_detector_scores_equal_pyscenedetects``) at ~30 us.
    Edge weights or a stats manager fall back to the stock code.
    """

    _prev_hsv: np.ndarray | None = None

    def _calculate_frame_score(self, timecode, frame_img: np.ndarray) -> float:
        import cv2

        weights = self._weights
        if weights.delta_edges > 0.0 or self.stats_manager is not None:
            bgr = cv2.cvtColor(frame_img, cv2.COLOR_RGB2BGR)
            return super()._calculate_frame_score(timecode, bgr)
        hsv = cv2.cvtColor(frame_img, cv2.COLOR_RGB2HSV)
        prev, self._prev_hsv = self._prev_hsv, hsv
        if prev is None:
            return 0.0
        num_pixels = float(hsv.shape[0] * hsv.shape[1])
        hue, sat, lum, _ = cv2.sumElems(cv2.absdiff(hsv, prev))
        components = (hue / num_pixels, sat / num_pixels, lum / num_pixels, 0.0)
        # added left to right, as the stock code's sum() of numpy floats is: from Python 3.12
        # on, sum() of plain floats is compensated and can differ in the last bit
        total = 0.0
        for c, w in zip(components, weights, strict=True):
            total += c * w
        return total / sum(abs(weight) for weight in weights)


def make_detector(cfg: CurateConfig, fps: float):
    """The configured PySceneDetect detector, fed RGB frames through ``process_frame``."""
    from scenedetect import AdaptiveDetector, ContentDetector

    class RgbContentDetector(_RgbFrameScore, ContentDetector):
        pass

    class RgbAdaptiveDetector(_RgbFrameScore, AdaptiveDetector):
        pass

    min_len = max(1, int(round(cfg.detector_min_scene_seconds * fps)))
    if cfg.detector == "content":
        return RgbContentDetector(threshold=cfg.content_threshold, min_scene_len=min_len)
    return RgbAdaptiveDetector(
        adaptive_threshold=cfg.adaptive_threshold,
        min_scene_len=min_len,
        min_content_val=cfg.adaptive_min_content,
    )


def detector_lag(cfg: CurateConfig, fps: float) -> int:
    """Frames a cut may be reported after the frame it happens at (window + flash filter)."""
    return max(1, int(round(cfg.detector_min_scene_seconds * fps))) + 4


class SpanPlanner:
    """Turns per-frame luma and detector cuts into clip spans, online.

    Call :meth:`add_frame` for every frame in order, :meth:`add_cut` for every cut the detector
    reports (the index of a scene's first frame), :meth:`advance` after each frame to collect
    spans that became final, and :meth:`finish` at the end of the stream.
    """

    def __init__(self, cfg: CurateConfig, fps: float):
        self.cfg = cfg
        self.fps = fps
        self.max_seconds = max(cfg.min_seconds, cfg.max_seconds)
        self.gap_cut = max(GAP_CUT_S, 4.0 / fps)
        self.fade_max = max(1, int(round(cfg.fade_max_seconds * fps)))
        self.trim = cfg.trim_frames
        self.horizon = max(self.fade_max + 1, detector_lag(cfg, fps) + self.trim + 1) + 1
        self.luma: list[float] = []
        self.times: list[float] = []
        self.breaks: set[int] = set()  # frames after a pause, a jump back, a damaged stretch
        self._offset = 0.0  # added to the timestamps after a jump back
        self.restarted = False
        """Whether the clock jumped back (takes joined): the timeline outruns the container's
        declared duration."""
        self.mark = bytearray()
        self.boundary: set[int] = set()  # frames that start a new scene
        self.final = 0  # frames < final have been decided
        self._cut_until = 0  # frames < this (not yet seen) are inside a cut's trim
        self._rising = 0  # frames left in a fade-in ramp after a dark stretch
        self._run: int | None = None
        self._dark: int | None = None
        self._out: list[Span] = []

    @property
    def n(self) -> int:
        return len(self.luma)

    @property
    def hold_from(self) -> int:
        """The oldest frame a caller must still keep (an open span may start there)."""
        return self.final if self._run is None else min(self._run, self.final)

    def time(self, k: int) -> float:
        """When frame ``k`` is shown (seconds); past the last frame, one period on."""
        if k < self.n:
            return self.times[k]
        return (self.times[-1] if self.times else -1.0 / self.fps) + (k - self.n + 1) / self.fps

    def end_time(self, k: int) -> float:
        """When a span ending before frame ``k`` ends: ``time(k)``, or after a break, one
        period after frame ``k - 1``."""
        return self.time(k - 1) + 1.0 / self.fps if k in self.breaks else self.time(k)

    def add_frame(self, luma: float, t: float | None = None) -> float:
        """Append the next frame's mean luma (0..255) and the time it is shown (seconds;
        ``None``: its index over the rate). Returns the time on the planner's
        timeline (``t`` unless the timestamps jumped back before)."""
        i = self.n
        t = i / self.fps if t is None else float(t) + self._offset
        paused = False
        if self.times:
            last = self.times[-1]
            if t < last - 1.0 / self.fps:  # a jump back: a new stream or clock, a cut
                self._offset += last + 1.0 / self.fps - t
                t, paused, self.restarted = last + 1.0 / self.fps, True, True
            elif t < last:  # a frame a little out of order: held at the time before
                t = last
            else:
                paused = t - last > self.gap_cut
        self.times.append(t)
        self.luma.append(float(luma))
        cfg = self.cfg
        m = GOOD
        if luma <= cfg.dark_luma:
            m = DARK
            if i > 0 and self.luma[i - 1] > cfg.dark_luma:  # a dark stretch begins: fade-out ramp
                j, lo = i - 1, max(self.final, i - self.fade_max)
                while j >= lo and self.luma[j] > self.luma[j + 1] + cfg.fade_luma_step:
                    self.mark[j] = max(self.mark[j], DARK)
                    j -= 1
            self._rising = self.fade_max
        elif self._rising and i > 0 and luma > self.luma[i - 1] + cfg.fade_luma_step:
            m = DARK  # still brightening out of a dark stretch
            self._rising -= 1
        else:
            self._rising = 0
        if i < self._cut_until:
            m = max(m, CUT)
        self.mark.append(m)
        if paused:
            self.add_break(i)
        return t

    def add_break(self, frame: int) -> None:
        """Frame ``frame`` does not follow on from the one before (a pause, a jump back, a
        damaged stretch skipped): a cut, and the span before ends one period after its last
        frame."""
        self.breaks.add(frame)
        self.add_cut(frame)

    def add_cut(self, frame: int) -> None:
        """A scene starts at ``frame``; frames within ``trim_frames`` of it are dropped."""
        if frame <= 0:
            return
        if frame - self.trim < self.final:
            log.debug("cut at %d reported after frame %d was final", frame, self.final)
        self.boundary.add(frame)
        for k in range(max(self.final, frame - self.trim), min(self.n, frame + self.trim)):
            self.mark[k] = max(self.mark[k], CUT)
        self._cut_until = max(self._cut_until, frame + self.trim)

    def _close_run(self, at: int) -> None:
        if self._run is not None:
            if self.end_time(at) - self.time(self._run) >= self.cfg.min_seconds - TIME_TOLERANCE_S:
                self._out.append(Span(self._run, at, "clip"))
            elif at > self._run:
                self._out.append(Span(self._run, at, "scene_too_short"))
            self._run = None

    def _close_dark(self, at: int) -> None:
        if self._dark is not None:
            self._out.append(Span(self._dark, at, "dark_or_fade"))
            self._dark = None

    def _decide(self, f: int) -> None:
        m = self.mark[f]
        if f in self.boundary:
            self._close_run(f)
        if m == DARK:
            if self._dark is None:
                self._dark = f
        else:
            self._close_dark(f)
        if m != GOOD:
            self._close_run(f)
            return
        if self._run is None:
            self._run = f
        # close before the next frame would take the span past max_seconds (unless it is
        # still under min_seconds: where no whole number of frames fits both, min wins)
        start = self.time(self._run)
        if (
            self.end_time(f + 2) - start > self.max_seconds + TIME_TOLERANCE_S
            and self.end_time(f + 1) - start >= self.cfg.min_seconds - TIME_TOLERANCE_S
        ):
            self._out.append(Span(self._run, f + 1, "clip"))
            self._run = None

    def advance(self) -> list[Span]:
        """Decide every frame at least ``horizon`` behind the newest; return final spans."""
        while self.final < self.n - self.horizon:
            self._decide(self.final)
            self.final += 1
        out, self._out = self._out, []
        return out

    def finish(self) -> list[Span]:
        """Decide the remaining frames at the end of the stream; return final spans."""
        while self.final < self.n:
            self._decide(self.final)
            self.final += 1
        self._close_run(self.n)
        self._close_dark(self.n)
        out, self._out = self._out, []
        return out


def plan_spans(
    luma: Iterable[float],
    cuts: Iterable[int],
    cfg: CurateConfig,
    fps: float,
    times: Iterable[float] | None = None,
) -> list[Span]:
    """Offline form of :class:`SpanPlanner` (cuts known up front), for tests and tools."""
    planner = SpanPlanner(cfg, fps)
    cut_list = sorted(set(int(c) for c in cuts))
    spans: list[Span] = []
    ts = iter(times) if times is not None else None
    for i, v in enumerate(luma):
        planner.add_frame(v, None if ts is None else next(ts))
        while cut_list and cut_list[0] <= i:
            planner.add_cut(cut_list.pop(0))
        spans.extend(planner.advance())
    spans.extend(planner.finish())
    return spans


def mean_luma(rgb: np.ndarray) -> float:
    """Mean luma (BT.601) of an RGB uint8 frame."""
    import cv2

    r, g, b, _ = cv2.mean(rgb)
    return float(0.114 * b + 0.587 * g + 0.299 * r)
