"""Quick in-process tuning runs for the text-faithfulness benchmark (no Ray, no curate).

    python benchmarks/text_faithfulness_tune.py --tag G --repeats 4 --steps 3000 \\
        --eval 1500,2200 --frames 4 --stride 4 --speed 0.45,0.55 --lr 2e-3 \\
        --model '{"pooled_text": true}'

Renders the benchmark's moving shapes straight from ``curate.synthetic`` (the benchmark's
colour x shape x direction split, ``--repeats`` shots per training combination), trains the
DiT with the trainer's own ``flow_loss`` / ``EMA`` on random windows, and at each ``--eval``
step (and the last) prints, for the EMA weights (``--load`` evaluates saved ones instead):

- caption sensitivity: the flow loss on 48 training windows at t = 0.3, 0.6, 0.9 with the
  true caption, the direction word swapped, the colour word swapped, and the opposite
  direction word (same axis, other sign);
- oracle readings (``curate.oracle.read_clip``) of ``--seeds`` generated clips per prompt for 16 seen
  and the 16 held-out prompts, per CFG scale.

It exists to make each try cheap; the benchmark itself (``text_faithfulness.py``) is what
counts. Results are appended to ``--out`` (JSON lines); samples and weights go next to it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faithfulness_scores import OPPOSITE, caption_losses, summarize  # noqa: E402
from text_faithfulness import split_combos  # noqa: E402

from curate.oracle import read_clip  # noqa: E402
from curate.synthetic import COLORS, DIRECTIONS, SHAPES, Shot, caption_for, render_shot  # noqa: E402
from recaption.backend_attributes import _DIRECTION as ATTRIBUTE_DIRECTION_WORDS  # noqa: E402
from train.flow import EMA, FlowConfig, euler_sample, flow_loss, prior_noise, shift_for_tokens  # noqa: E402
from train.latents import pixels_to_unit, unit_to_pixels  # noqa: E402
from train.model import DiT, ModelConfig, count_params  # noqa: E402
from train.text import TextConfig, build_text_encoder  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tag", default="run", help="name of the run (file prefix)")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--eval", default="", help="comma-separated steps to evaluate at")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--text-lr", type=float, default=1.0,
                   help="learning-rate multiplier of the parameters named by --text-lr-params")  # fmt: skip
    p.add_argument("--text-lr-params", default="text_embed.,.cross.k.,.cross.v.",
                   help="comma-separated name fragments of the parameters --text-lr scales")  # fmt: skip
    p.add_argument("--ema", type=float, default=0.99)
    p.add_argument("--betas", default="0.9,0.999", help="AdamW betas (the trainer: 0.9,0.99)")
    p.add_argument("--repeats", type=int, default=1, help="shots per training combination")
    p.add_argument("--speed", default="0.18,0.3", help="speed range, frame widths per second")
    p.add_argument("--frames", type=int, default=8, help="frames per training window")
    p.add_argument("--stride", type=int, default=2, help="source frames between samples")
    p.add_argument("--size", type=int, default=32, help="training side in pixels")
    p.add_argument("--model", default="{}", help="ModelConfig fields as JSON")
    p.add_argument("--flow", default='{"base_shift": 3.0}', help="FlowConfig fields as JSON")
    p.add_argument("--text", default="{}",
                   help='TextConfig fields as JSON, e.g. \'{"layer": 0}\' (encoder: minilm)')  # fmt: skip
    p.add_argument("--cfg", default="5", help="comma-separated CFG scales to evaluate")
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=1,
                   help="generated clips per prompt (seed k draws noise seed i + 1000*k for "
                   "prompt i; seed 0 is what runs before --seeds drew)")  # fmt: skip
    p.add_argument("--load", default="",
                   help="evaluate these saved EMA weights, no training (--steps labels the "
                   "result); the model flags must match the run that saved them")  # fmt: skip
    p.add_argument("--caption", default="",
                   help="caption template for training and prompts, with {color}, {shape} and "
                   "{direction}, e.g. 'a {color} object moving {direction}'; 'attributes' "
                   "takes what the demo's attribute captioner writes for such a shot "
                   "(common.demo.shape_prompt); default: caption_for ('a red circle moving "
                   "left')")  # fmt: skip
    p.add_argument("--shape-per-color", action="store_true",
                   help="footage where each colour always has the same shape (colour i: shape "
                   "i mod 3), with 3x --repeats shots per combination (as many clips)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, the footage's speeds and backgrounds, the batches "
                   "and the training noise (not the evaluation's noise)")  # fmt: skip
    p.add_argument("--pairs", default="",
                   help="train on a curated dataset's clips and captions instead (a directory "
                   "holding pairs/, e.g. a demo's OUT/data), every frame resized and cropped to "
                   "--size; clips shorter than the window are skipped; evaluated as usual "
                   "(use --caption attributes for the demo's wording)")  # fmt: skip
    p.add_argument("--pairs-moving-only", action="store_true",
                   help="with --pairs: train on the moving-object clips only (as --pairs-caption "
                   "does), keeping the dataset's own captions")  # fmt: skip
    p.add_argument("--pairs-keep-other", action="store_true",
                   help="with --pairs-caption: keep the other clips too, with their own captions")  # fmt: skip
    p.add_argument("--pairs-caption", action="store_true",
                   help="with --pairs: keep only the moving-object clips and caption each "
                   "with --caption's template for its colour and direction instead of its "
                   "own caption")  # fmt: skip
    p.add_argument("--crf", type=int, default=None,
                   help="pass each rendered shot through H.264 at this crf (PyAV, as curate "
                   "encodes clips) before resizing; default: raw frames")  # fmt: skip
    p.add_argument("--out", default="bench_out/tune/results.jsonl")
    return p.parse_args(argv)


def make_caption(template: str, color: str, shape: str, direction: str) -> str:
    """The caption of a shape shot under ``--caption``."""
    if not template:
        return caption_for(dict(kind="shape", color=color, shape=shape, direction=direction))
    if template == "attributes":
        from common.demo import shape_prompt

        return shape_prompt(color, direction)
    return template.format(color=color, shape=shape, direction=direction)


def render_clips(args, combos, rng) -> tuple[list[np.ndarray], list[str], list[tuple]]:
    """``args.repeats`` shots per combination at the training size: (frames, caption, truth)."""
    lo, hi = map(float, args.speed.split(","))
    clips, caps, truth = [], [], []
    for c, s, d in combos:
        for _ in range(args.repeats * (len(SHAPES) if args.shape_per_color else 1)):
            shot = Shot(kind="shape", seconds=2.0, color=c, shape=s, direction=d,
                        speed=float(rng.uniform(lo, hi)), background=int(rng.integers(1_000_000)))  # fmt: skip
            frames = render_shot(shot, 64, 64, 12.0)
            if args.crf is not None:  # through H.264 and back, as curate stores clips
                from common.video import decode_mp4, encode_mp4

                data = encode_mp4(list(frames), 12.0, crf=args.crf, threads=1, deterministic=True)
                frames = decode_mp4(data)
            size = (args.size, args.size)
            clips.append(
                np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
            )
            caps.append(make_caption(args.caption, c, s, d))
            truth.append((c, s, d))
    return clips, caps, truth


# the attribute captioner's direction phrases, read back ("moving left" -> "left")
_ATTR_DIR = {words: d for d, words in ATTRIBUTE_DIRECTION_WORDS.items()}
_ATTR = re.compile(rf"(?:An? (\w+) object|Something) ({'|'.join(map(re.escape, _ATTR_DIR))})")


def load_pair_clips(args) -> tuple[list[np.ndarray], list[str], list[tuple | None]]:
    """Every clip of ``args.pairs`` at the training size, its caption, and (colour, 'object',
    direction) where the caption is an attribute caption of a moving object, else None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from common.video import decode_mp4
    from train.data import resize_crop
    from train.index import pair_files

    span = (args.frames - 1) * args.stride + 1
    tbl = pa.concat_tables(
        [
            pq.read_table(f, columns=["clip_id", "video", "caption"])
            for f in pair_files([args.pairs])
        ]
    ).sort_by("clip_id")
    moving_only = args.pairs_moving_only or (args.pairs_caption and not args.pairs_keep_other)
    clips, caps, truth, short = [], [], [], 0
    for video, cap in zip(tbl.column("video").to_pylist(), tbl.column("caption").to_pylist(),
                          strict=True):  # fmt: skip
        frames = resize_crop(decode_mp4(video), args.size, args.size)
        if len(frames) < span:
            short += 1
            continue
        m = _ATTR.match(cap)
        if moving_only and m is None:
            continue  # not a moving object
        clips.append(frames)
        caps.append(cap)
        # the captioner names no colour for white ("Something moving ...")
        known = (m.group(1) or "white", "object", _ATTR_DIR[m.group(2)]) if m else None
        truth.append(known)
        if args.pairs_caption and known:  # the clean template instead of the dataset's own
            caps[-1] = make_caption(args.caption, *known)
    print(f"pairs {args.pairs}: {len(clips)} clips ({sum(t is not None for t in truth)} moving "
          f"objects), {short} shorter than the {span}-frame window skipped", flush=True)  # fmt: skip
    return clips, caps, truth


class Tuner:
    """Data, model, optimiser and evaluation of one tuning run."""

    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.rng = np.random.default_rng(args.seed)
        self.train_c, self.held = split_combos(2)
        if args.shape_per_color:
            own = {c: SHAPES[i % len(SHAPES)] for i, c in enumerate(COLORS)}
            self.train_c = [x for x in self.train_c if x[1] == own[x[0]]]
            self.held = [x for x in self.held if x[1] == own[x[0]]]
        if args.pairs:
            self.clips, self.caps, self.truth = load_pair_clips(args)
        else:
            self.clips, self.caps, self.truth = render_clips(args, self.train_c, self.rng)
        text = {"encoder": "minilm", "max_length": 32, **json.loads(args.text)}
        self.enc = build_text_encoder(TextConfig(**text))
        with torch.no_grad():  # every training caption encoded once: (clips, L, D), (clips, L)
            self.cap_text, self.cap_mask = self.enc.encode(self.caps)
        self.mcfg = ModelConfig(**json.loads(args.model))
        self.fcfg = FlowConfig(**json.loads(args.flow))
        self.model = DiT.from_config(self.mcfg, self.enc.dim)
        if self.mcfg.text_norm:  # as the trainer: the training captions' token statistics
            tokens = self.cap_text[self.cap_mask]  # (N, D), every clip's caption tokens
            cov = torch.cov(tokens.T.double()) if self.mcfg.text_whiten else None
            self.model.set_text_stats(tokens.mean(0), tokens.std(0), cov)
        betas = tuple(map(float, args.betas.split(",")))
        text_path = tuple(args.text_lr_params.split(","))
        groups = [{"params": [], "scale": 1.0}, {"params": [], "scale": args.text_lr}]
        for n, p in self.model.named_parameters():
            groups[any(k in "." + n for k in text_path)]["params"].append(p)
        self.opt = torch.optim.AdamW(groups, lr=args.lr, betas=betas,
                                     weight_decay=0.0)  # fmt: skip
        self.ema = EMA(self.model, args.ema)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.span = (args.frames - 1) * args.stride + 1
        self.out = Path(args.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)

    def window(self, i: int, rng) -> np.ndarray:
        st = rng.integers(0, self.clips[i].shape[0] - self.span + 1)
        return self.clips[i][st : st + self.span : self.a.stride]

    def batch(self):
        idx = self.rng.integers(len(self.clips), size=self.a.batch)
        x0 = pixels_to_unit(np.stack([self.window(i, self.rng) for i in idx]))
        return x0, self.cap_text[idx], self.cap_mask[idx]

    def step(self, step: int) -> float:
        lr = self.a.lr * min(1.0, step / max(self.a.warmup, 1))
        for g in self.opt.param_groups:
            g["lr"] = lr * g["scale"]
        x0, text, mask = self.batch()
        loss, _, _ = flow_loss(self.model, x0, text, mask, self.fcfg, generator=self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.ema.update(self.model)
        return float(loss.detach())

    def sensitivity(self, m: DiT) -> dict[str, list[float]]:
        """Loss at t = 0.3/0.6/0.9: [true, wrong direction, wrong colour, opposite direction]
        captions."""
        rng = np.random.default_rng(1)
        known = [i for i, x in enumerate(self.truth) if x is not None]
        idx = rng.choice(known, min(48, len(known)), replace=False)
        x0 = pixels_to_unit(np.stack([self.window(i, rng) for i in idx]))
        times = (0.3, 0.6, 0.9)
        cap = self.a.caption
        combos = [self.truth[i] for i in idx]

        def other(vocab, value, k: int) -> str:  # the k-th other value, as swap_attribute
            others = [v for v in vocab if v != value]
            return others[k % len(others)]

        variants = {
            # the template for the true attributes too, not the clip's own caption: with
            # --pairs the dataset's captions differ from the template in other words as well
            "true": [make_caption(cap, c, s, d) for c, s, d in combos],
            "wrong_color": [make_caption(cap, other(COLORS, c, k), s, d)
                            for k, (c, s, d) in enumerate(combos)],
            "wrong_direction": [make_caption(cap, c, s, other(DIRECTIONS, d, k))
                                for k, (c, s, d) in enumerate(combos)],
            "opposite_direction": [make_caption(cap, c, s, OPPOSITE[d]) for c, s, d in combos],
        }  # fmt: skip
        loss = caption_losses(m, self.enc, self.fcfg, x0, variants["true"], times, variants)
        order = ("true", "wrong_direction", "wrong_color", "opposite_direction")
        return {f"t{t}": [round(loss[v][t], 5) for v in order] for t in times}

    def evaluate(self, step: int) -> dict:
        a = self.a
        m = DiT.from_config(self.mcfg, self.enc.dim)
        m.load_state_dict(self.ema.state_dict())
        m.eval()
        if not a.load:
            torch.save(self.ema.state_dict(), self.out.parent / f"{a.tag}_{step}.pt")
        res: dict = {"sensitivity": self.sensitivity(m)}
        print(
            f"  sens@{step} (true, wrong dir, wrong colour, opposite dir): {res['sensitivity']}",
            flush=True,
        )
        pick = np.random.default_rng(0).choice(len(self.train_c), 16, replace=False)
        seen = [self.train_c[i] for i in sorted(pick)]
        tokens = m.num_tokens(a.frames, a.size, a.size)
        for name, combos in (("seen", seen), ("held", self.held)):
            prompts = [make_caption(a.caption, c, s, d) for c, s, d in combos]
            text, mask = self.enc.encode(prompts * a.seeds)
            shape = (3, a.frames, a.size, a.size)
            noise = torch.stack(
                [prior_noise((1, *shape), self.fcfg.frame_noise_share,
                             torch.Generator().manual_seed(i + 1000 * k))[0]
                 for k in range(a.seeds) for i in range(len(prompts))]
            )  # fmt: skip
            for scale in a.cfg.split(","):
                x = euler_sample(m, noise.shape, text, mask, steps=a.sample_steps,
                                 cfg_scale=float(scale), shift=shift_for_tokens(tokens, self.fcfg),
                                 noise=noise)  # fmt: skip
                vids = unit_to_pixels(x)
                np.save(self.out.parent / f"{a.tag}_{step}_{name}_cfg{scale}.npy", vids)
                rows = []
                for (c, _, d), v in zip(combos * a.seeds, vids, strict=True):
                    r = read_clip(np.ascontiguousarray(v))
                    rows.append(dict(color=c, direction=d, read_color=r.color,
                                     read_direction=r.direction, presence=r.presence))  # fmt: skip
                sm = summarize(rows) | {"dirs": [r["read_direction"] for r in rows]}
                first = summarize(rows[: len(combos)])
                sm["seed0"] = {k: first[k] for k in ("color", "direction", "both", "presence")}
                res[f"{name}_cfg{scale}"] = sm
                print(f"  eval@{step} {name} cfg {scale} ({len(rows)} clips): colour "
                      f"{sm['color']:.2f} dir {sm['direction']:.2f} axis {sm['axis']:.2f} "
                      f"both {sm['both']:.2f} "
                      f"presence {sm['presence']:.2f}; seed 0 only: both {first['both']:.2f}; "
                      f"read {sm['dirs']}", flush=True)  # fmt: skip
        return res


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tuner = Tuner(args)
    print(f"params {count_params(tuner.model)}, clips {len(tuner.clips)}", flush=True)
    if args.load:
        tuner.ema.shadow = torch.load(args.load, map_location="cpu")
        res = tuner.evaluate(args.steps)
        line = dict(tag=args.tag, args=vars(args), step=args.steps, loaded=args.load, res=res)
        with open(tuner.out, "a") as f:
            f.write(json.dumps(line) + "\n")
        return 0
    evals = {int(x) for x in args.eval.split(",") if x} | {args.steps}
    t0, losses = time.time(), []
    for step in range(1, args.steps + 1):
        losses.append(tuner.step(step))
        if step % 100 == 0:
            print(
                f"step {step} loss {np.mean(losses[-100:]):.4f} {time.time() - t0:.0f}s", flush=True
            )
        if step in evals:
            res = tuner.evaluate(step)
            line = dict(tag=args.tag, args=vars(args), step=step, train_s=time.time() - t0,
                        loss=float(np.mean(losses[-100:])), res=res)  # fmt: skip
            with open(tuner.out, "a") as f:
                f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
