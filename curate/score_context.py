"""What every weight-free scorer reads: a clip's sampled frames, computed once and shared.

``ScoreContext`` holds the clip's frames sampled at ``sample_fps`` and downsized for analysis,
their luma, and (lazily, once) the dense Farneback flow of one pair per sampled frame (the
frame and the one ``flow_step`` later: per-frame motion, where Farneback is accurate) and the
camera (global) motion fitted to it, so the motion and camera scorers share one flow field.

Units: flow and motion are reported in px per clip frame at a 256 px short side, whatever
the analysis size and the sampling step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from curate.score_config import ScoreConfig

REF_SHORT_SIDE = 256.0
"""Motion is reported in px/frame as if the clip's short side were this many pixels."""


def sample_indices(n: int, fps: float, cfg: ScoreConfig) -> np.ndarray:
    """Indices of the frames sampled from ``n`` frames at ``fps`` (at least 2 where n >= 2)."""
    if n <= 0:
        return np.zeros(0, np.int64)
    step = max(1.0, fps / cfg.sample_fps)
    count = max(min(n, 2), int(np.floor((n - 1) / step)) + 1)
    count = min(count, cfg.max_samples, n)
    if count <= 1:
        return np.zeros(1, np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, count)).astype(np.int64))


def resize_short(img: np.ndarray, short: int) -> np.ndarray:
    """Downsize so the short side is ``short`` (never upscales; INTER_AREA)."""
    h, w = img.shape[:2]
    s = short / min(h, w)
    if s >= 1.0:
        return img
    size = (max(2, int(round(w * s))), max(2, int(round(h * s))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


@dataclass
class GlobalMotion:
    """Camera motion fitted per flow pair (similarity model about the centre).

    ``tx``, ``ty``: translation of the content (px/frame at 256 px short side, +x right,
    +y down); ``zoom``: the scale rate's displacement at the frame edge (same units; > 0 the
    content grows); ``rot``: rotation (same units at the edge).
    """

    tx: np.ndarray
    ty: np.ndarray
    zoom: np.ndarray
    rot: np.ndarray
    support: np.ndarray
    """Share of the frame's grid points that are textured and follow the fitted motion."""


@dataclass
class ScoreContext:
    """A clip's sampled frames and the quantities several scorers share."""

    frames: np.ndarray
    """All decoded frames of the clip (T, H, W, 3) uint8 RGB at the encoded size."""
    fps: float
    """Frame rate of ``frames``."""
    cfg: ScoreConfig
    """The score config."""
    indices: np.ndarray = field(init=False)
    """Indices of the sampled frames in ``frames``."""

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or len(self.frames) == 0:
            raise ValueError(f"expected (T,H,W,3) RGB frames, got shape {self.frames.shape}")
        self.indices = sample_indices(len(self.frames), self.fps, self.cfg)

    @property
    def sampled_full(self) -> np.ndarray:
        """Sampled frames at the encoded size (a view, no copy)."""
        return self.frames[self.indices]

    def _small_at(self, i: int) -> np.ndarray:
        """Frame ``i`` downsized to ``analysis_short_side`` (cached)."""
        cache = self.__dict__.setdefault("_small_cache", {})
        if i not in cache:
            cache[i] = resize_short(self.frames[i], self.cfg.analysis_short_side)
        return cache[i]

    @cached_property
    def small(self) -> np.ndarray:
        """Sampled RGB frames downsized to ``analysis_short_side`` (N, h, w, 3) uint8."""
        return np.stack([self._small_at(int(i)) for i in self.indices])

    @cached_property
    def gray(self) -> np.ndarray:
        """Luma of ``small`` (N, h, w) uint8 (BT.601)."""
        return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in self.small])

    @property
    def scale(self) -> float:
        """Factor from analysis pixels to pixels at a 256 px short side."""
        return REF_SHORT_SIDE / float(min(self.gray.shape[1:]))

    @cached_property
    def pairs(self) -> np.ndarray:
        """Flow pairs (P, 2): each sampled frame and the frame ``flow_step`` clip frames later
        (earlier for the last ones), so flow measures per-frame motion, where it is accurate,
        at every sampled moment."""
        n, k = len(self.frames), self.cfg.flow_step
        if n < 2:
            return np.zeros((0, 2), np.int64)
        out = []
        for i in self.indices:
            a = int(i) if i + k < n else max(0, n - 1 - k)
            out.append((a, min(n - 1, a + k)))
        return np.array(sorted(set(out)), np.int64)

    def _flow_image(self, i: int) -> np.ndarray:
        """The single channel the flow runs on: (luma + max(R,G,B)) / 2, so objects whose luma
        matches their background (a blue shape on dim gray) still have contrast."""
        f = self._small_at(i)
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.uint16)
        # max over the three channels as two np.maximum: ~30x faster than f.max(axis=-1)
        brightest = np.maximum(np.maximum(f[..., 0], f[..., 1]), f[..., 2])
        return ((g + brightest) // 2).astype(np.uint8)

    @cached_property
    def pair_diffs(self) -> np.ndarray:
        """Mean absolute gray difference of each flow pair (P,), 0..255."""
        out = []
        for a, b in self.pairs:
            ga = cv2.cvtColor(self._small_at(int(a)), cv2.COLOR_RGB2GRAY).astype(np.int16)
            gb = cv2.cvtColor(self._small_at(int(b)), cv2.COLOR_RGB2GRAY).astype(np.int16)
            out.append(np.abs(ga - gb).mean())
        return np.asarray(out, np.float32)

    @cached_property
    def diffs(self) -> np.ndarray:
        """Mean absolute gray difference of each consecutive sample pair (N-1,), 0..255."""
        g = self.gray.astype(np.int16)
        if len(g) < 2:
            return np.zeros(0, np.float32)
        return np.abs(np.diff(g, axis=0)).mean(axis=(1, 2)).astype(np.float32)

    @cached_property
    def flows_ref(self) -> np.ndarray:
        """Farneback flow of each pair (P, h, w, 2) in px per clip frame at a 256 px short side
        (computed once, shared by the motion and camera scorers)."""
        h, w = self.gray.shape[1:]
        out = np.empty((len(self.pairs), h, w, 2), np.float32)
        for j, (a, b) in enumerate(self.pairs):
            out[j] = cv2.calcOpticalFlowFarneback(
                self._flow_image(int(a)), self._flow_image(int(b)), None, pyr_scale=0.5,
                levels=3, winsize=9, iterations=2, poly_n=5, poly_sigma=1.1, flags=0,
            )  # fmt: skip
            out[j] *= self.scale / float(b - a)
        return out

    @cached_property
    def global_motion(self) -> GlobalMotion:
        """The camera motion of each pair: a robust least-squares similarity fit to the flow at
        textured points (flow in flat regions is only the pyramid's spill from nearby motion).

        A pair whose agreeing textured points cover less than ``camera_min_support`` of the
        frame gives no evidence of camera motion (e.g. one object over a plain background) and
        is taken as a still camera.
        """
        cfg = self.cfg
        n, h, w = self.flows_ref.shape[:3]
        step = max(1, min(h, w) // 20)  # fit on a grid: enough points, cheap
        ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
        r = 0.5 * max(h, w)  # edge radius in analysis px
        x = ((xs - (w - 1) / 2) / r).ravel()
        y = ((ys - (h - 1) / 2) / r).ravel()
        a = np.zeros((2 * x.size, 4), np.float64)  # unknowns: tx, ty, zoom, rot (at the edge)
        a[: x.size, 0], a[x.size :, 1] = 1, 1
        a[: x.size, 2], a[x.size :, 2] = x, y
        a[: x.size, 3], a[x.size :, 3] = -y, x
        params = np.zeros((n, 4), np.float64)
        support = np.zeros(n, np.float64)
        for i in range(n):
            img = self._flow_image(int(self.pairs[i, 0]))
            grad = np.abs(cv2.Sobel(img, cv2.CV_32F, 1, 0)) + np.abs(
                cv2.Sobel(img, cv2.CV_32F, 0, 1)
            )
            textured = (grad[ys, xs] >= cfg.camera_texture).ravel()
            if textured.sum() < 8:
                continue
            f = self.flows_ref[i, ys, xs]
            b = np.concatenate([f[..., 0].ravel(), f[..., 1].ravel()]).astype(np.float64)
            ok = textured
            for _ in range(3):  # refit without the worst residuals (moving objects)
                keep = np.concatenate([ok, ok])
                p, *_ = np.linalg.lstsq(a[keep], b[keep], rcond=None)
                res = np.abs(a @ p - b)
                res = res[: x.size] + res[x.size :]
                thr = max(2.5 * float(np.median(res[textured])), 0.25)
                ok = textured & (res <= thr)
                if ok.sum() < 8:
                    break
            support[i] = ok.mean()
            if support[i] >= cfg.camera_min_support:
                params[i] = p
        # zoom/rot are displacements at the frame edge, in px/frame at 256 px short side
        return GlobalMotion(tx=params[:, 0], ty=params[:, 1], zoom=params[:, 2],
                            rot=params[:, 3], support=support)  # fmt: skip

    @cached_property
    def _unit_grid(self) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.flows_ref.shape[1:3]
        r = 0.5 * max(h, w)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return (xs - (w - 1) / 2) / r, (ys - (h - 1) / 2) / r

    def camera_flow(self, i: int) -> np.ndarray:
        """The fitted camera flow field of pair ``i`` (h, w, 2), px/frame at 256 px."""
        x, y = self._unit_grid
        gm = self.global_motion
        u = gm.tx[i] + gm.zoom[i] * x - gm.rot[i] * y
        v = gm.ty[i] + gm.zoom[i] * y + gm.rot[i] * x
        return np.stack([u, v], axis=-1).astype(np.float32)


def evenly(n: int, k: int, repeat: bool = False) -> list[int]:
    """``k`` evenly spaced indices of ``n`` items, at the centres of ``k`` equal parts; fewer
    when ``n < k``, unless ``repeat``: then items repeat and there are always ``k``."""
    k = max(1, k if repeat else min(k, n))
    return [min(n - 1, int((j + 0.5) * n / k)) for j in range(k)]
