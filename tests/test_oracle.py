"""The text-faithfulness oracle must read the truth back from the generator's own clips."""

from __future__ import annotations

import itertools

import numpy as np

from common.video import decode_mp4, encode_mp4
from curate.oracle import read_clip
from curate.synthetic import COLORS, DIRECTIONS, SHAPES, Shot, render_shot


def _combos():
    return list(itertools.product(COLORS, SHAPES, DIRECTIONS))


def _frames(color: str, shape: str, direction: str, background: int) -> np.ndarray:
    """One second of a shape moving at half a frame width per second, 32x32 at 16 fps."""
    shot = Shot(kind="shape", seconds=1.0, color=color, shape=shape, direction=direction,
                speed=0.5, background=background)  # fmt: skip
    return np.stack(list(render_shot(shot, 32, 32, 16)))


def test_oracle_reads_raw_generator_frames():
    right = total = 0
    present = []
    for k, (color, shape, direction) in enumerate(_combos()):
        frames = _frames(color, shape, direction, background=k)
        r = read_clip(frames)
        total += 1
        right += r.color == color and r.direction == direction
        present.append(r.presence)
    assert right / total >= 0.99, f"oracle read {right}/{total} clips correctly"
    assert min(present) >= 0.99


def test_oracle_reads_encoded_clips_at_training_size():
    # through H.264 at the size the tiny model generates: compression must not fool it
    right = total = 0
    for k, (color, shape, direction) in enumerate(_combos()):
        frames = _frames(color, shape, direction, background=100 + k)
        decoded = decode_mp4(encode_mp4(frames, 16, crf=18))
        r = read_clip(decoded)
        total += 1
        right += r.color == color and r.direction == direction and r.presence >= 0.99
    assert right / total >= 0.99, f"oracle read {right}/{total} encoded clips correctly"


def test_oracle_finds_nothing_in_empty_or_static_frames():
    blank = np.full((8, 32, 32, 3), 60, np.uint8)
    r = read_clip(blank)
    assert r.color is None and r.direction is None and r.presence == 0.0
    # a still object: colour yes, direction no
    shot = Shot(
        kind="shape", seconds=1.0, color="blue", shape="square", direction="left", speed=0.0
    )
    r = read_clip(np.stack(list(render_shot(shot, 32, 32, 8))))
    assert r.color == "blue" and r.direction is None


def test_oracle_rejects_noise():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, size=(8, 32, 32, 3)).astype(np.uint8)
    r = read_clip(noise)
    # noise is "present" everywhere but has no coherent track or colour it can be sure of
    assert r.direction is None
