"""Does the demo's model follow its prompts? Reads its clips with the text-faithfulness oracle.

    python benchmarks/demo_prompts.py demo_out/run [--seeds 2] [--first-sentence] [--same-noise]

Generates one clip per colour x direction of the synthetic footage (8 x 4 prompts per
seed, seeds 0, 100, 200, ...) with ``train.generate.generate``, reads each with
``curate.oracle.read_clip`` and prints colour, direction, direction axis (sign ignored) and
both accuracies against chance, the object presence, what was read, and the right
directions by colour. Prompt ``i`` of a seed starts from noise ``seed + i``; with
``--same-noise`` all 32 prompts of a seed start from the same noise, so a noise that draws
one direction whatever the prompt says counts against every direction alike.

The prompts are what ``recaption --backend attributes`` writes for such a clip, because
that is the text the demo's model was trained on: by default its whole caption ("A red
object moving left across a dim frame; the camera does not move. Dominant colours:
gray, red. The motion is moderate. Dim scene.", as in training and as the demo prompts), or
with ``--first-sentence`` only its first sentence. The captioner never names white (a white
shape is "Something moving ..."), so white prompts carry no colour word.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faithfulness_scores import AXIS, summarize  # noqa: E402

from common.demo import shape_prompt  # noqa: E402
from curate.oracle import read_clip  # noqa: E402
from curate.synthetic import COLORS, DIRECTIONS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", help="the demo's run directory (e.g. demo_out/run)")
    p.add_argument("--seeds", type=int, default=2, help="clips per prompt (seeds 0, 100, ...)")
    p.add_argument(
        "--first-sentence",
        action="store_true",
        help="prompt with the caption's first sentence only (default: the whole caption)",
    )
    p.add_argument(
        "--size",
        default=None,
        metavar="WxH",
        help="generate at this size (default: the run's first bucket, as `spacetime generate`)",
    )
    p.add_argument(
        "--template",
        default=None,
        help="prompt with this text instead, e.g. 'a {color} object moving {direction}' (for "
        "runs whose shape captions were rewritten in the benchmark's words)",
    )
    p.add_argument(
        "--cfg",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: the run's flow.cfg_scale, as `generate`)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="Euler steps (default: the run's, as `generate`)"
    )
    p.add_argument(
        "--shift",
        type=float,
        default=None,
        help="sampling timestep shift (default: the training shift for the token count)",
    )
    p.add_argument(
        "--same-noise",
        action="store_true",
        help="start every prompt of a seed from that seed's noise (paired prompts)",
    )
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from train.generate import generate, parse_size

    size = parse_size(args.size) if args.size else None

    truth = [(c, d) for c in COLORS for d in DIRECTIONS]
    if args.template:
        prompts = [args.template.format(color=c, direction=d) for c, d in truth]
    else:
        prompts = [shape_prompt(c, d, args.first_sentence) for c, d in truth]
    rows = []
    for k in range(args.seeds):
        videos = generate(
            args.run,
            prompts,
            size=size,
            steps=args.steps,
            cfg_scale=args.cfg,
            shift=args.shift,
            seed=100 * k,
            device=args.device,
            same_noise=args.same_noise,
        )
        for (c, d), v in zip(truth, videos, strict=True):
            r = read_clip(v)
            rows.append(dict(color=c, direction=d, read_color=r.color,
                             read_direction=r.direction, presence=r.presence))  # fmt: skip
    s = summarize(rows)
    at = (
        (f" at {args.size}" if args.size else "")
        + (f", cfg {args.cfg:g}" if args.cfg is not None else "")
        + (", same noise per seed" if args.same_noise else "")
    )
    print(
        f"demo prompts: {len(prompts)} prompts x {args.seeds} seeds = {s['n']} clips{at}, {args.run}"
    )
    print(f"e.g. {prompts[0]!r}")
    print("| metric | measured | chance |\n| --- | --- | --- |")
    print(f"| colour | {s['color']:.1%} | {1 / len(COLORS):.1%} |")
    print(f"| direction | {s['direction']:.1%} | {1 / len(DIRECTIONS):.1%} |")
    print(f"| direction axis (sign ignored) | {s['axis']:.1%} | 50.0% |")
    print(f"| both | {s['both']:.1%} | {1 / len(COLORS) / len(DIRECTIONS):.1%} |")
    print(f"| object presence | {s['presence']:.1%} | |")
    print("colours read:", Counter(r["read_color"] for r in rows).most_common())
    print("directions read:", Counter(r["read_direction"] for r in rows).most_common())
    on_axis = [r for r in rows if AXIS.get(r["read_direction"]) == AXIS[r["direction"]]]
    right_sign = sum(r["read_direction"] == r["direction"] for r in on_axis)
    share = right_sign / len(on_axis) if on_axis else float("nan")
    print(f"sign within the axis: {right_sign} of {len(on_axis)} ({share:.1%}; chance 50%)")
    print("read (left / right / up / down / still) by prompted direction:")
    for d in DIRECTIONS:
        got = Counter(r["read_direction"] for r in rows if r["direction"] == d)
        print(f"  {d:>5s}: " + " / ".join(str(got[x]) for x in (*DIRECTIONS, None)))
    print("right direction by colour, of", args.seeds, "per cell (" + " / ".join(DIRECTIONS) + "):")
    for c in COLORS:
        hit = Counter(
            r["direction"]
            for r in rows
            if r["color"] == c and r["read_direction"] == r["direction"]
        )
        print(f"  {c:>6s}: " + " / ".join(str(hit[d]) for d in DIRECTIONS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
