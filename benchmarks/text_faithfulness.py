"""Does the model follow the text? Colour and motion accuracy on seen and held-out prompts.

    python benchmarks/text_faithfulness.py --mode cpu --output bench_out/text_faithfulness
    python benchmarks/text_faithfulness.py --mode full --output /data/tf   # GPU-sized

1. footage: moving shapes (colour x shape x direction, random speed) rendered by
   ``curate.synthetic``; some colour x shape x direction combinations are held out of
   training entirely (every held-out colour and direction still appears in training).
2. ``curate.pipeline.run_curate`` (the real curate job, demo preset) cuts, scores, filters
   and deduplicates it like any other footage.
3. Each curated clip is mapped back to the generator shot it was cut from (same source,
   >= 90% of the clip inside the shot's span); its caption is the generator's truth
   (``caption_for``), not the attribute captioner's, so the benchmark measures the model.
   Seen combinations become ``OUT/data/pairs``, held-out ones ``OUT/heldout/pairs``.
4. ``train.loop.train`` trains the tiny preset (the demo's ``train:`` section + ``--set``).
5. ``train.generate.generate`` makes clips for held-out and seen prompts with fixed seeds;
   ``curate.oracle.read_clip`` reads each one's colour, direction and per-frame presence.
6. One table: colour / direction / both accuracy on seen and held-out prompts against
   chance, object persistence, flow-matching loss by timestep bin on held-out and seen
   clips, training time. Written to OUT/results.json and OUT/results.md too.

Targets: both colour and direction right on >= 90% of held-out prompts, object present in
>= 95% of frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # faithfulness_scores

from faithfulness_scores import (  # noqa: E402
    chance,
    loss_by_t,
    read_generated,
    summarize,
)

from curate.synthetic import (  # noqa: E402
    COLORS,
    DIRECTIONS,
    SHAPES,
    Shot,
    caption_for,
    next_plain_background,
    write_video,
)

log = logging.getLogger("text_faithfulness")

Combo = tuple[str, str, str]
"""(colour, shape, direction)."""

CAPTION_SOURCE = "generator-truth"
TARGET_BOTH = 0.90
TARGET_PRESENCE = 0.95


@dataclass(frozen=True)
class Mode:
    """Sizes of one benchmark mode."""

    size: int
    """Source video side in pixels (square)."""
    fps: float
    seconds: float
    """Length of each shot."""
    shots_per_video: int
    repeats: int
    """Shots rendered per training combination (different speed and background)."""
    heldout_repeats: int
    """Shots rendered per held-out combination (for the held-out loss)."""
    heldout_per_color: int
    """Held-out combinations per colour."""
    seen_prompts: int
    """Seen combinations evaluated (a fixed sample)."""
    seeds: int
    """Generated clips per prompt (seeds 0..seeds-1)."""
    speed: tuple[float, float] = (0.18, 0.3)
    """Range of the shapes' speed (frame widths per second), drawn uniformly per shot."""
    num_frames: int = 8
    """Frames per training window (and per generated clip)."""
    frame_stride: int = 2
    """Source frames between sampled frames (a larger stride shows more motion per frame)."""
    train: str = ""
    """Overrides (``key=value``, space-separated) on the demo preset's train: section."""
    sample_steps: int | None = None
    """Euler steps at generation (None: the run's flow.sample_steps)."""


# fmt: off
MODES: dict[str, Mode] = {
    # Settings from the tuning runs in benchmarks/RESULTS.md (run 12 learned direction after
    # ~2000 steps: 4 frames, faster shapes, lr 2e-3, pooled text; runs 29 and 31: absolute
    # position embeddings and windows spanning the shot (stride 7) learn the motion's axis;
    # runs 32-36: MiniLM's layer 3 (the demo preset's text.layer) learns its sign).
    "cpu": Mode(size=64, fps=12.0, seconds=2.0, shots_per_video=6, repeats=2, heldout_repeats=1,
                heldout_per_color=2, seen_prompts=16, seeds=1, speed=(0.35, 0.5), num_frames=4,
                frame_stride=7, train="model.preset=tiny model.pooled_text=true "
                "model.abs_pos=true lr=2e-3 image_fraction=0.0 steps=2500"),
    "full": Mode(size=128, fps=12.0, seconds=3.0, shots_per_video=8, repeats=20,
                 heldout_repeats=2, heldout_per_color=2, seen_prompts=32, seeds=8, num_frames=16,
                 train="model.preset=S model.patch_h=4 model.patch_w=4 use_gpu=true "
                 "precision=bf16 buckets=[64x64] batch_size=32 steps=20000 "
                 "lr=3e-4 warmup=500 ema_decay=0.999 checkpoint_every=2000 sample_every=2000 "
                 "loader_cpus=1.0 cpus_per_worker=8.0"),
}
# fmt: on


# --------------------------------------------------------------------------- split


def split_combos(per_color: int) -> tuple[list[Combo], list[Combo]]:
    """(training, held-out) colour x shape x direction combinations.

    Colour ``i`` holds out ``per_color`` combinations with distinct shapes and directions
    (direction ``(i + 2k) % 4``, shape ``(i + k) % 3``); every held-out colour and direction
    keeps other combinations in training (checked).
    """
    colors = list(COLORS)
    held = {
        (c, SHAPES[(i + k) % len(SHAPES)], DIRECTIONS[(i + 2 * k + i // 4) % len(DIRECTIONS)])
        for i, c in enumerate(colors)
        for k in range(per_color)
    }
    every = list(itertools.product(colors, SHAPES, DIRECTIONS))
    train = [c for c in every if c not in held]
    heldout = [c for c in every if c in held]
    check_split(train, heldout)
    return train, heldout


def check_split(train: Sequence[Combo], heldout: Sequence[Combo]) -> None:
    """Raise ValueError when the split leaks or a held-out colour/direction is never trained."""
    if set(train) & set(heldout):
        raise ValueError(f"held-out combos in training: {sorted(set(train) & set(heldout))}")
    for c, _, d in heldout:
        if not any(t[0] == c for t in train) or not any(t[2] == d for t in train):
            raise ValueError(f"held-out {c}/{d}: colour or direction never seen in training")


# --------------------------------------------------------------------------- footage


def plan_shots(
    combos: Sequence[Combo],
    repeats: int,
    seconds: float,
    seed: int,
    speed: tuple[float, float] = (0.18, 0.3),
) -> list[Shot]:
    """``repeats`` shape shots per combination, random speed, shuffled (deterministic)."""
    rng = np.random.default_rng(seed)
    shots = [
        Shot(
            kind="shape",
            seconds=seconds,
            color=c,
            shape=s,
            direction=d,
            speed=float(rng.uniform(*speed)),
        )
        for c, s, d in combos
        for _ in range(repeats)
    ]
    return [shots[i] for i in rng.permutation(len(shots))]


def write_corpus(out: Path, shots: Sequence[Shot], mode: Mode, seed: int) -> list[dict]:
    """Videos of ``mode.shots_per_video`` shots with hard cuts; consecutive shots get
    backgrounds whose tones differ by >= 15 so every cut is visible. Returns the truth."""
    out.mkdir(parents=True, exist_ok=True)
    truth, bg, prev = [], 10_000 * (seed + 1), -100.0
    for v in range(0, len(shots), mode.shots_per_video):
        placed = []
        for shot in shots[v : v + mode.shots_per_video]:
            bg, prev = next_plain_background(bg, prev)
            placed.append(dataclasses.replace(shot, background=bg))
        path = out / f"shapes_{v // mode.shots_per_video:04d}.mp4"
        truth.append(write_video(path, placed, mode.size, mode.size, mode.fps))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def match_shot(
    truth: Sequence[dict], source_path: str, start_s: float, end_s: float, min_overlap: float = 0.9
) -> dict | None:
    """The generator shot a clip was cut from: same source file and at least ``min_overlap``
    of the clip's span inside the shot; None when no shot qualifies (a missed cut)."""
    name = Path(source_path).resolve()
    for video in truth:
        if Path(video["path"]).resolve() != name:
            continue
        span = max(end_s - start_s, 1e-9)
        for shot in video["shots"]:
            inside = min(end_s, shot["end_s"]) - max(start_s, shot["start_s"])
            if inside / span >= min_overlap:
                return shot
    return None


def make_pairs(
    data: Path, heldout_dir: Path, truth: Sequence[dict], heldout: Sequence[Combo]
) -> dict[str, int]:
    """Caption every curated clip with its shot's truth; write seen combos to
    ``data/pairs`` and held-out ones to ``heldout_dir/pairs``. Returns counts."""
    import pyarrow as pa

    from schemas.tables import schema_for
    from schemas.validate import read_table, write_table

    held = set(heldout)
    parts: dict[str, list[pa.Table]] = {"seen": [], "heldout": []}
    counts = {"clips": 0, "unmatched": 0, "seen": 0, "heldout": 0}
    for f in sorted((data / "clips").glob("*.parquet")):
        tbl = read_table(str(f), "clips")
        keep: dict[str, list[int]] = {"seen": [], "heldout": []}
        caps: dict[str, list[str]] = {"seen": [], "heldout": []}
        spans = zip(*(tbl[k].to_pylist() for k in ("source_path", "start_s", "end_s")), strict=True)
        for i, (p, a, b) in enumerate(spans):
            counts["clips"] += 1
            shot = match_shot(truth, p, a, b)
            if shot is None or shot["kind"] != "shape":
                counts["unmatched"] += 1
                continue
            combo = (shot["color"], shot["shape"], shot["direction"])
            split = "heldout" if combo in held else "seen"
            keep[split].append(i)
            caps[split].append(caption_for(shot))
        for split in parts:
            if keep[split]:
                t, c = tbl.take(keep[split]), caps[split]
                for name, col in (("caption", c), ("caption_short", c),
                                  ("caption_source", [CAPTION_SOURCE] * len(c)),
                                  ("caption_words", [len(x.split()) for x in c])):  # fmt: skip
                    t = t.append_column(name, pa.array(col, schema_for("pairs").field(name).type))
                parts[split].append(t)
                counts[split] += t.num_rows
    for split, dst in (("seen", data / "pairs"), ("heldout", heldout_dir / "pairs")):
        dst.mkdir(parents=True, exist_ok=True)
        for old in dst.glob("*.parquet"):
            old.unlink()
        if parts[split]:
            write_table(pa.concat_tables(parts[split]), str(dst / "part-00000.parquet"), "pairs")
    return counts


# --------------------------------------------------------------------------- table


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def _rel(loss: dict[str, Any], attr: str, k: str) -> str:
    """Relative loss change of a swapped-word caption against the true one at bin ``k``."""
    try:
        return f"{100 * (loss[attr][k] / loss['true'][k] - 1):+.1f}%"
    except (KeyError, ZeroDivisionError):
        return "n/a"


def format_table(res: dict[str, Any]) -> str:
    """The results as one markdown table (plus the loss-by-t rows)."""
    ch, seen, held = res["chance"], res["seen"], res["heldout"]
    lines = [
        f"text faithfulness ({res['mode']} mode): {res['train_steps']} steps, "
        f"train {res['train_s']:.0f}s{' (earlier run, reused)' if res.get('reused_run') else ''}"
        f", wall {res['wall_s']:.0f}s, {res['pairs']['seen']} "
        f"training clips, {res['pairs']['heldout']} held-out clips",
        "",
        "| metric | seen | held-out | chance | target (held-out) |",
        "| --- | --- | --- | --- | --- |",
        f"| prompts x seeds | {seen['n']} | {held['n']} | | |",
    ]
    rows = (("color", "colour accuracy"), ("direction", "direction accuracy"),
            ("axis", "direction axis accuracy (sign ignored)"), ("both", "both accuracy"))  # fmt: skip
    for k, label in rows:
        tgt = f">= {_pct(TARGET_BOTH)}" if k == "both" else ""
        lines.append(
            f"| {label} | {_pct(seen.get(k, float('nan')))} | {_pct(held.get(k, float('nan')))} "
            f"| {_pct(ch[k])} | {tgt} |"
        )
    lines.append(
        f"| object persistence | {_pct(seen['presence'])} | {_pct(held['presence'])} "
        f"| | >= {_pct(TARGET_PRESENCE)} |"
    )
    seen_l, held_l = res["loss_by_t"]["seen"], res["loss_by_t"]["heldout"]
    for k in seen_l.get("true", {}):
        lines.append(
            f"| flow loss t={k} | {seen_l['true'][k]:.4f} | "
            f"{held_l.get('true', {}).get(k, float('nan')):.4f} | | |"
        )
    swaps = (("wrong_color", "wrong colour"), ("wrong_direction", "wrong direction"),
             ("opposite_direction", "opposite direction"))  # fmt: skip
    for attr, label in swaps:
        for k in seen_l.get(attr, {}):
            lines.append(
                f"| loss change, {label} word, t={k} | {_rel(seen_l, attr, k)} | "
                f"{_rel(held_l, attr, k)} | | |"
            )
    verdict = "PASS" if res["pass"] else "FAIL"
    lines += [
        "",
        f"{verdict}: held-out both {_pct(held['both'])} (target "
        f"{_pct(TARGET_BOTH)}), persistence {_pct(held['presence'])} (target "
        f"{_pct(TARGET_PRESENCE)})",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- run


def _reuse_run(out: Path, runs: Path, tcfg: Any) -> float:
    """Check that OUT/run was trained with ``tcfg``; returns its recorded training time."""
    from common.config import to_dict

    saved = runs / "train_config.json"
    if not saved.exists():
        raise SystemExit(f"--reuse-run: {runs} holds no trained run (no train_config.json)")
    have = json.loads(saved.read_text())
    want = json.loads(json.dumps(to_dict(tcfg)))
    have = have.get("train", have)
    changed = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if changed:
        raise SystemExit(f"--reuse-run: {runs} was trained with other settings: {changed}")
    prev = out / "results.json"
    train_s = json.loads(prev.read_text()).get("train_s") if prev.exists() else None
    log.info("reusing the run in %s (not retrained)", runs)
    return float("nan") if train_s is None else float(train_s)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every step; returns the results dict (also written to the output dir)."""
    from common.config import deep_merge, load_stage_config, parse_overrides
    from curate.config import CurateConfig
    from curate.pipeline import run_curate
    from train.config import load_train_config
    from train.loop import train

    t_all = time.monotonic()
    mode = MODES[args.mode]
    out = Path(args.output).resolve()
    footage, data, heldout_dir = out / "footage", out / "data", out / "heldout"
    train_combos, heldout = split_combos(mode.heldout_per_color)
    names = ", ".join("/".join(c) for c in heldout)
    log.info("%d training combos, %d held out: %s", len(train_combos), len(heldout), names)
    truth_file = footage / "truth.json"
    if truth_file.exists():
        truth = json.loads(truth_file.read_text())
    else:
        shots = plan_shots(train_combos, mode.repeats, mode.seconds, args.seed, mode.speed)
        shots += plan_shots(heldout, mode.heldout_repeats, mode.seconds, args.seed + 1, mode.speed)
        truth = write_corpus(footage, shots, mode, args.seed)
        log.info("wrote %d shots in %d videos to %s", len(shots), len(truth), footage)
    t = time.monotonic()
    ccfg = load_stage_config(CurateConfig, "curate", "demo", None, parse_overrides(args.curate_set))
    manifest = run_curate([str(footage)], data, ccfg, args.address)
    log.info("curate: %s in %.0fs", manifest.get("counts"), time.monotonic() - t)
    counts = make_pairs(data, heldout_dir, truth, heldout)
    log.info("pairs: %s", counts)
    window = {"num_frames": mode.num_frames, "frame_stride": mode.frame_stride}
    over = deep_merge(window | parse_overrides(mode.train.split()), parse_overrides(args.set))
    if args.steps is not None:
        over["steps"] = args.steps
    tcfg = load_train_config("demo", None, over)
    runs = out / "run"
    reused = bool(args.reuse_run)
    if reused:
        train_s = _reuse_run(out, runs, tcfg)
    else:
        shutil.rmtree(runs, ignore_errors=True)  # a fresh run: the settings may have changed
        t = time.monotonic()
        summary = train([str(data)], runs, tcfg, address=args.address)
        train_s = time.monotonic() - t
        log.info("trained %s in %.0fs", summary.get("final_step"), train_s)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(train_combos), mode.seen_prompts, replace=False)
    seen = [train_combos[i] for i in sorted(pick)]
    device = "cuda" if tcfg.use_gpu else "cpu"
    t = time.monotonic()
    steps = args.sample_steps or mode.sample_steps
    rows_seen = read_generated(runs, seen, mode.seeds, steps, args.cfg, device, args.shift)
    rows_held = read_generated(runs, heldout, mode.seeds, steps, args.cfg, device, args.shift)
    n = len(rows_seen) + len(rows_held)
    log.info("generated and read %d clips in %.0fs", n, time.monotonic() - t)
    splits = (("seen", data), ("heldout", heldout_dir))
    loss = {k: loss_by_t(runs, d / "pairs", 64, device) for k, d in splits}
    res: dict[str, Any] = dict(
        mode=args.mode, train_steps=tcfg.steps, train_s=train_s, reused_run=reused,
        train_overrides=over,
        flow=dataclasses.asdict(tcfg.flow), sample_steps=steps, cfg_scale=args.cfg,
        sample_shift=args.shift,
        pairs=counts, curate_counts=manifest.get("counts"), chance=chance(),
        seen=summarize(rows_seen), heldout=summarize(rows_held), loss_by_t=loss,
        readings=rows_seen + rows_held,
    )  # fmt: skip
    res["pass"] = bool(
        res["heldout"]["both"] >= TARGET_BOTH
        and min(res["heldout"]["presence"], res["seen"]["presence"]) >= TARGET_PRESENCE
    )
    res["wall_s"] = time.monotonic() - t_all
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "results.md").write_text(format_table(res) + "\n")
    return res


_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--mode", dict(choices=sorted(MODES), default="cpu",
                    help="cpu: reduced (2 CPU cores, ~16 min idle); full: GPU-sized (default: cpu)")),
    ("--output", dict(default="bench_out/text_faithfulness",
                      help="output dir: footage, curated data, pairs, run, results.{json,md}; "
                      "footage and curation are reused on a rerun; OUT/run is retrained unless "
                      "--reuse-run")),
    ("--steps", dict(type=int, default=None,
                     help="training steps (default: the demo preset's train.steps)")),
    ("--set", dict(action="append", default=[], metavar="KEY=VALUE",
                   help="override a train config field, e.g. --set lr=2e-3 (repeatable)")),
    ("--curate-set", dict(action="append", default=[], metavar="KEY=VALUE",
                          help="override a curate config field (demo preset), repeatable")),
    ("--sample-steps", dict(type=int, default=None,
                            help="Euler steps at generation (default: the run's flow setting)")),
    ("--cfg", dict(type=float, default=None,
                   help="CFG scale at generation (default: the run's flow.cfg_scale)")),
    ("--shift", dict(type=float, default=None,
                     help="timestep shift at generation (default: the training shift)")),
    ("--reuse-run", dict(action="store_true",
                         help="evaluate OUT/run as trained by an earlier run with the same "
                         "settings (no training), e.g. to compare --cfg or --sample-steps")),
    ("--seed", dict(type=int, default=0, help="seed of the footage and of the seen prompts")),
    ("--address", dict(default=None, help="Ray cluster address (default: a local Ray)")),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--help`` prints the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, kw in _FLAGS:
        p.add_argument(flag, **kw)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    res = run(args)
    print(format_table(res))
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
