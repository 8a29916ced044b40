"""Cost of each weight-free scorer on CPU, against PySceneDetect detect-only on the same footage.

Renders synthetic clips (shapes, pans, zooms, static) at the demo clip size, decodes them once,
runs ``curate.scoring.score_frames`` on each (one process, one thread for OpenCV, as in a Ray
task), and prints one table: per scorer, milliseconds per clip, milliseconds per second of
video, and clip-frames per second; then the total next to ``scenedetect.detect`` with
AdaptiveDetector on the same MP4s (its own decoding) — the budget curate is held to.

    python benchmarks/score_throughput.py [--clips 24] [--seconds 4] [--short-side 128] [--fps 12]
        [--set analysis_short_side=96 --set sample_fps=2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--short-side", type=int, default=128, help="clip short side (demo: 128)")
    ap.add_argument("--fps", type=float, default=12.0, help="clip frame rate (demo: 12)")
    ap.add_argument("--source-fps", type=float, default=24.0, help="frame rate of the source MP4s")
    ap.add_argument("--set", action="append", default=[], help="ScoreConfig field=value")
    args = ap.parse_args(argv)

    import cv2

    from common.config import from_dict, parse_overrides
    from common.video import decode_mp4
    from curate import scoring
    from curate.score_config import ScoreConfig
    from curate.synthetic import DIRECTIONS, Shot, write_video

    cv2.setNumThreads(1)
    cfg = from_dict(ScoreConfig, parse_overrides(args.set))
    kinds = ["shape", "pan", "zoom", "static"]
    w = int(round(args.short_side * 16 / 9 / 2)) * 2
    with tempfile.TemporaryDirectory() as tmp:
        paths, clips = [], []
        for i in range(args.clips):
            kind = kinds[i % len(kinds)]
            direction = ("in", "out")[i % 2] if kind == "zoom" else DIRECTIONS[i % 4]
            shot = Shot(
                kind=kind, seconds=args.seconds, direction=direction, background=i, speed=0.2
            )
            p = Path(tmp) / f"c{i:03d}.mp4"
            write_video(p, [shot], w * 2, args.short_side * 2, args.source_fps)  # a 2x "source"
            paths.append(p)
            step = int(round(args.source_fps / args.fps))
            frames = decode_mp4(p, size=(w, args.short_side))[::step]
            clips.append(frames)
        scoring.score_frames(clips[0], args.fps, cfg)  # load the OCR model outside the timing
        scoring.TIMINGS.clear()
        t0 = time.perf_counter()
        for f in clips:
            scoring.score_frames(f, args.fps, cfg)
        total = time.perf_counter() - t0

        from scenedetect import AdaptiveDetector, detect

        t0 = time.perf_counter()
        for p in paths:
            detect(str(p), AdaptiveDetector())
        det = time.perf_counter() - t0

    secs = args.clips * args.seconds
    nframes = sum(len(f) for f in clips)
    print(f"{args.clips} clips x {args.seconds:g}s, {w}x{args.short_side} @ {args.fps:g} fps; "
          f"sample_fps={cfg.sample_fps:g}, analysis_short_side={cfg.analysis_short_side}")  # fmt: skip
    print(f"{'scorer':12s} {'ms/clip':>9s} {'ms/video-s':>11s} {'clip-frames/s':>14s}")
    for name, t in sorted(scoring.TIMINGS.items(), key=lambda kv: -kv[1]):
        fps = nframes / t if t > 0 else float("inf")
        print(f"{name:12s} {1000 * t / args.clips:9.2f} {1000 * t / secs:11.2f} {fps:14.0f}")
    print(
        f"{'TOTAL':12s} {1000 * total / args.clips:9.2f} {1000 * total / secs:11.2f} {nframes / total:14.0f}"
    )
    print(f"{'scenedetect':12s} {1000 * det / args.clips:9.2f} {1000 * det / secs:11.2f}   "
          f"(detect-only, AdaptiveDetector, {2 * w}x{2 * args.short_side} @ {args.source_fps:g} fps sources)")  # fmt: skip
    print(f"scoring / detect-only = {total / det:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
