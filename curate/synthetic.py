"""Synthetic footage with known truth: moving shapes, camera pans and zooms, cuts, fades.

Used by the tests, the demo and the benchmarks. Every video comes with its truth: where
each shot starts and ends (frames and seconds), what moves in it, which colour, which way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.video import encode_mp4

log = logging.getLogger(__name__)

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 30),
    "purple": (140, 40, 190),
    "orange": (245, 130, 20),
    "cyan": (30, 200, 210),
    "white": (245, 245, 245),
}
"""Named RGB colours the generator paints shapes with."""

SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
KINDS = ("shape", "static", "pan", "zoom", "black")

_DIR_VEC = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "none": (0, 0)}


@dataclass(frozen=True)
class Shot:
    """One shot of synthetic footage."""

    kind: str = "shape"
    """shape (an object moves over a still background), static, pan, zoom, or black."""
    seconds: float = 2.0
    """Length of the shot."""
    color: str = "red"
    """Colour of the moving shape (a key of COLORS)."""
    shape: str = "circle"
    """circle, square or triangle."""
    direction: str = "right"
    """Motion of the shape (shape shots) or the camera (pan: left/right/up/down; zoom: in/out)."""
    speed: float = 0.25
    """Shape or camera speed in frame widths per second."""
    background: int = 0
    """Seed of the background texture; shots with different seeds cut visibly."""
    fade_in: float = 0.0
    """Seconds of fade from black at the start of the shot."""
    fade_out: float = 0.0
    """Seconds of fade to black at the end of the shot."""


def _texture(seed: int, h: int, w: int, plain: bool) -> np.ndarray:
    """A background: smooth coloured blobs (textured) or a dim flat tone with light grain."""
    rng = np.random.default_rng(seed)
    if plain:
        tone = int(rng.integers(40, 90)) + rng.integers(-6, 7, size=3)  # near-grey, dim
        img = np.empty((h, w, 3), np.float32)
        img[:] = tone
        img += rng.normal(0, 2.0, size=(h, w, 1))
        return np.clip(img, 0, 255).astype(np.uint8)
    small = rng.integers(0, 255, size=(max(h // 16, 4), max(w // 16, 4), 3)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = rng.integers(0, 255, size=(h, w, 3)).astype(np.uint8)
    fine = cv2.GaussianBlur(fine, (0, 0), 1.5)
    return cv2.addWeighted(img, 0.75, fine, 0.25, 0)


MIN_TONE_STEP = 15.0
"""Least difference in mean grey level between consecutive plain backgrounds of
``demo_corpus``: closer tones made cuts between two shape shots that PySceneDetect missed."""


def plain_tone(seed: int) -> float:
    """Mean grey level of the plain background with this seed."""
    return float(_texture(seed, 4, 4, plain=True).mean())


def next_plain_background(seed: int, prev_tone: float) -> tuple[int, float]:
    """The first seed after ``seed`` whose plain background's tone differs from ``prev_tone``
    by at least ``MIN_TONE_STEP``, and that tone."""
    seed += 1
    tone = plain_tone(seed)
    while abs(tone - prev_tone) < MIN_TONE_STEP:
        seed += 1
        tone = plain_tone(seed)
    return seed, tone


def _draw_shape(
    img: np.ndarray, shape: str, color: tuple[int, int, int], cx: float, cy: float, r: int
):
    c = tuple(int(v) for v in color)
    x, y = int(round(cx)), int(round(cy))
    if shape == "circle":
        cv2.circle(img, (x, y), r, c, -1, lineType=cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(img, (x - r, y - r), (x + r, y + r), c, -1)
    elif shape == "triangle":
        pts = np.array([[x, y - r], [x - r, y + r], [x + r, y + r]], np.int32)
        cv2.fillPoly(img, [pts], c, lineType=cv2.LINE_AA)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def shape_path(shot: Shot, n: int, w: int, h: int) -> list[tuple[float, float]]:
    """Centre of the shape in each of ``n`` frames: it crosses the frame through the middle."""
    dx, dy = _DIR_VEC[shot.direction]
    step = shot.speed * w / (n / shot.seconds) if shot.seconds > 0 else 0.0  # px per frame
    total = step * (n - 1)
    cx0 = w / 2 - dx * total / 2
    cy0 = h / 2 - dy * total / 2
    return [(cx0 + dx * step * i, cy0 + dy * step * i) for i in range(n)]


def render_shot(shot: Shot, width: int, height: int, fps: float) -> Iterator[np.ndarray]:
    """Yield the RGB frames of one shot."""
    if shot.kind not in KINDS:
        raise ValueError(f"unknown shot kind {shot.kind!r}; known: {KINDS}")
    n = max(1, int(round(shot.seconds * fps)))
    w, h = width, height
    if shot.kind == "black":
        frames: Iterator[np.ndarray] = (np.zeros((h, w, 3), np.uint8) for _ in range(n))
    elif shot.kind == "static":
        bg = _texture(shot.background, h, w, plain=False)
        frames = (bg.copy() for _ in range(n))
    elif shot.kind == "shape":
        bg = _texture(shot.background, h, w, plain=True)
        r = max(3, min(w, h) // 8)
        path = shape_path(shot, n, w, h)

        def gen():
            for cx, cy in path:
                img = bg.copy()
                _draw_shape(img, shot.shape, COLORS[shot.color], cx, cy, r)
                yield img

        frames = gen()
    elif shot.kind == "pan":
        frames = _pan(shot, n, w, h, fps)
    else:
        frames = _zoom(shot, n, w, h)
    fin = int(round(shot.fade_in * fps))
    fout = int(round(shot.fade_out * fps))
    for i, f in enumerate(frames):
        g = 1.0
        if fin and i < fin:
            g = min(g, i / fin)
        if fout and i >= n - fout:
            g = min(g, (n - 1 - i) / fout)
        yield f if g >= 1.0 else (f.astype(np.float32) * g).astype(np.uint8)


def _pan(shot: Shot, n: int, w: int, h: int, fps: float) -> Iterator[np.ndarray]:
    """The camera moves ``direction``: the scene content moves the opposite way."""
    step = shot.speed * w / fps
    travel = int(np.ceil(step * n)) + 2
    dx, dy = _DIR_VEC[shot.direction]
    big = _texture(shot.background, h + abs(dy) * travel, w + abs(dx) * travel, plain=False)
    for i in range(n):
        off = step * i
        x0 = off if dx > 0 else (abs(dx) * travel - off if dx < 0 else 0)
        y0 = off if dy > 0 else (abs(dy) * travel - off if dy < 0 else 0)
        m = np.float32([[1, 0, -x0], [0, 1, -y0]])
        yield cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR)


def _zoom(shot: Shot, n: int, w: int, h: int) -> Iterator[np.ndarray]:
    """Zoom ``in`` (content grows) or ``out`` about the centre."""
    bg = _texture(shot.background, h, w, plain=False)
    grow = 1.0 + shot.speed * shot.seconds
    for i in range(n):
        a = i / max(n - 1, 1)
        s = 1.0 + (grow - 1.0) * (a if shot.direction == "in" else 1.0 - a)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, s)
        yield cv2.warpAffine(bg, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write_video(
    path: str | Path,
    shots: Sequence[Shot],
    width: int = 160,
    height: int = 96,
    fps: float = 24.0,
    crf: int = 18,
) -> dict:
    """Render ``shots`` back to back (hard cuts between them) into an H.264 MP4.

    Returns the truth: one entry per shot with its frame and second span and parameters.
    """
    frames: list[np.ndarray] = []
    truth = []
    for shot in shots:
        start = len(frames)
        frames.extend(render_shot(shot, width, height, fps))
        truth.append(
            {
                **dataclasses.asdict(shot),
                "start_frame": start,
                "end_frame": len(frames),  # exclusive
                "start_s": start / fps,
                "end_s": len(frames) / fps,
            }
        )
    encode_mp4(frames, fps, out=Path(path), crf=crf, deterministic=True)  # same bytes every run
    return {"path": str(path), "width": width, "height": height, "fps": fps, "shots": truth}


def caption_for(shot: Shot | dict) -> str:
    """The caption that states a shot's truth (used by benchmarks, not by the captioner)."""
    s = shot if isinstance(shot, dict) else dataclasses.asdict(shot)
    if s["kind"] == "shape":
        return f"a {s['color']} {s['shape']} moving {s['direction']}"
    if s["kind"] == "pan":
        return f"the camera pans {s['direction']} over a textured scene"
    if s["kind"] == "zoom":
        return f"the camera zooms {s['direction']} on a textured scene"
    if s["kind"] == "static":
        return "a still textured scene"
    return "black"


def _extra_shot(kind: int, v: int, seconds: float, background: int) -> Shot:
    """Video ``v``'s non-shape shot of ``kind``: 0 static, 1 pan, 2 zoom."""
    if kind == 0:
        return Shot(kind="static", seconds=seconds, background=background)
    if kind == 1:
        return Shot(kind="pan", seconds=seconds, direction=DIRECTIONS[v % 4], speed=0.15,
                    background=background)  # fmt: skip
    return Shot(kind="zoom", seconds=seconds, direction="in" if v % 2 else "out", speed=0.2,
                background=background)  # fmt: skip


def demo_corpus(
    out_dir: str | Path,
    num_videos: int = 6,
    seconds_per_shot: float = 2.5,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] = ((160, 96), (128, 128), (192, 108)),
    fps_choices: Sequence[float] = (24.0, 25.0, 30.0),
    shape_speed: float = 0.35,
    shape_shots: int = 4,
) -> list[dict]:
    """Write ``num_videos`` videos mixing shape shots (colour × shape × direction),
    pans, zooms, static stretches, fades and cuts. Returns the truth of each video and
    writes it to ``truth.json`` next to them.

    ``shape_speed`` is in frame extents per second along the motion (widths for left/right,
    heights for up/down), so a vertical move crosses a wide frame in the same time as a
    horizontal one and stays inside it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colors = list(COLORS)
    # Each direction draws its colours from its own shuffled deck of all colours, refilled when
    # used up, so every colour moves in every direction equally often (3 times each in the
    # demo's 24 videos; independent draws gave 1 to 7 shots per colour-direction pair).
    decks: dict[str, list[str]] = {d: [] for d in DIRECTIONS}

    def next_color(direction: str) -> str:
        if not decks[direction]:
            decks[direction] = [colors[i] for i in rng.permutation(len(colors))]
        return decks[direction].pop()

    results = []
    bg = 1000 * seed
    for v in range(num_videos):
        w, h = sizes[v % len(sizes)]
        fps = fps_choices[v % len(fps_choices)]
        shots: list[Shot] = []
        prev_tone = -100.0
        for k in range(shape_shots):
            bg, prev_tone = next_plain_background(bg, prev_tone)
            direction = DIRECTIONS[(v + k) % 4]
            shots.append(
                Shot(
                    kind="shape",
                    seconds=seconds_per_shot,
                    color=next_color(direction),
                    shape=SHAPES[int(rng.integers(len(SHAPES)))],
                    direction=direction,
                    speed=shape_speed * (h / w if direction in ("up", "down") else 1.0),
                    background=bg,
                )
            )
        # Two of the three non-shape kinds per video, joined by a fade-out / fade-in and set
        # between the second and third shape shots. The fades sit on them, not on shape shots:
        # curate drops faded frames, and a faded 2.5 s shape shot left a clip too short for
        # the trainer's window (31 of 192 shape shots in a 32-video corpus).
        extras = []
        for kind in (v % 3, (v + 1) % 3):
            bg += 1
            extras.append(_extra_shot(kind, v, seconds_per_shot, bg))
        extras[0] = dataclasses.replace(extras[0], fade_out=0.5)
        extras[1] = dataclasses.replace(extras[1], fade_in=0.5)
        at = min(2, len(shots))
        shots[at:at] = extras
        truth = write_video(out / f"synthetic_{v:03d}.mp4", shots, w, h, fps)
        results.append(truth)
    (out / "truth.json").write_text(json.dumps(results, indent=1))
    log.info("wrote %d synthetic videos to %s", num_videos, out)
    return results
