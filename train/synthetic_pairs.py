"""Tiny synthetic text–video pairs (``OUT/pairs/*.parquet``) for tests, the demo and benchmarks.

Each clip is one shape shot from ``curate.synthetic`` (a coloured shape moving over a plain
background) encoded with the project's H.264 writer; its caption states the truth
(``curate.synthetic.caption_for``). Rows follow the ``pairs`` schema exactly.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from curate.synthetic import COLORS, DIRECTIONS, SHAPES, Shot, caption_for, write_video
from schemas.validate import rows_to_table, write_table

log = logging.getLogger(__name__)


def make_synthetic_pairs(
    out_dir: str | Path,
    n: int = 16,
    sizes: Sequence[tuple[int, int]] = ((48, 32), (32, 32), (32, 48)),
    seconds: float = 1.0,
    fps: float = 12.0,
    seed: int = 0,
    rows_per_file: int = 8,
    colors: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``n`` synthetic pairs to ``out_dir/pairs/part-XXXXX.parquet``; returns the files.

    Clip ``i`` has size ``sizes[i % len(sizes)]`` (width, height), ``seconds * fps`` frames,
    and a shape/colour/direction drawn from ``seed``. Deterministic for a given seed.
    """
    out = Path(out_dir) / "pairs"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = list(colors or COLORS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            w, h = sizes[i % len(sizes)]
            shot = Shot(
                kind="shape",
                seconds=seconds,
                color=palette[int(rng.integers(len(palette)))],
                shape=SHAPES[int(rng.integers(len(SHAPES)))],
                direction=DIRECTIONS[int(rng.integers(len(DIRECTIONS)))],
                speed=0.4,
                background=seed * 100_000 + i,
            )
            path = Path(tmp) / f"clip_{i:05d}.mp4"
            truth = write_video(path, [shot], width=w, height=h, fps=fps)
            video = path.read_bytes()
            source_id = hashlib.sha256(video).hexdigest()[:32]
            clip_id = hashlib.sha256(f"{source_id}:{seed}:{i}".encode()).hexdigest()[:32]
            span = truth["shots"][0]
            rows.append(
                {
                    "clip_id": clip_id,
                    "source_id": source_id,
                    "source_path": f"synthetic://{seed}/{i}",
                    "scene_index": 0,
                    "start_s": 0.0,
                    "end_s": float(span["end_s"]),
                    "fps": float(fps),
                    "num_frames": int(span["end_frame"]),
                    "width": int(w),
                    "height": int(h),
                    "video": video,
                    "motion_direction": shot.direction,
                    "dominant_colors": [shot.color],
                    "caption": caption_for(shot),
                    "caption_short": caption_for(shot),
                    "caption_source": "synthetic",
                    "caption_words": len(caption_for(shot).split()),
                }
            )
    files = []
    for k in range(0, n, max(1, rows_per_file)):
        tbl = rows_to_table(rows[k : k + rows_per_file], "pairs")
        path = out / f"part-{k // max(1, rows_per_file):05d}.parquet"
        write_table(tbl, str(path), "pairs")
        files.append(path)
    log.info("wrote %d synthetic pairs in %d file(s) to %s", n, len(files), out)
    return files
