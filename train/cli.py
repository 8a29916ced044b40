"""``spacetime train`` (Ray Train on pair shards) and ``spacetime generate`` (text -> video)."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)

MODEL_ALIASES = {"small": "S", "base": "B", "large": "L", "xl": "XL", "s": "S", "b": "B", "l": "L"}
"""Friendly names accepted by --preset for the model size presets."""

_TRAIN_DESCRIPTION = """\
Train the video diffusion transformer on text-video pairs with Ray Train (TorchTrainer).

OUT is a dataset directory written by `spacetime recaption` (its OUT/pairs/*.parquet are read);
give several to train on their union (a clip id present in two is used once). A directory of
Parquet files or a single file works too.

Data: the pair shards are indexed (light columns only), every caption is embedded once by a
Ray Data actor stage (RUN/text/embeddings.arrow), and a deterministic plan is made: each clip
is a video sample (num_frames at frame_stride) or, with probability image_fraction, a single
frame; it is resized and centre-cropped to the bucket size nearest its aspect ratio; each
batch holds one shape. Ray Data decodes the planned frames on CPU tasks and streams each rank
its own ordered shard (ray.train.get_dataset_shard). --set 'where=[[COLUMN, OP, VALUE], ...]'
trains on the pairs that meet every condition only (e.g. [[camera_motion, ==, static]]); the
run logs and prints how many of the inputs' pairs it kept. --set mirror_fraction=0.5 flips
that share of samples left-right and trains them on their caption with "left" and "right"
exchanged; --set reverse_fraction=0.5 plays that share backwards with every direction word
exchanged (only for footage whose motion looks the same backwards).
--set short_caption_fraction=0.2 trains that share of samples on the pair's one-sentence
caption_short instead of its dense caption, so that short prompts work too.

Training: DDP (default) or FSDP2 (--set strategy=fsdp), bf16 autocast on GPU
(--set precision=bf16), gradient accumulation and clipping, AdamW with warmup, EMA,
activation checkpointing and torch.compile as options. Metrics (loss, loss by timestep bin,
samples/s, tokens/s, data wait) go to the log and TensorBoard (RUN/tb) every log_every steps,
and to ray.train.report with each checkpoint.

RUN holds everything: train_config.json (the resolved config), checkpoints (checkpoint_*/:
model, EMA, optimizer, data position), batches/rank<r>.jsonl (every micro-batch: content hash,
clip ids, loss), samples/step_XXXXXX_<i>.mp4 and tb/. Rerunning the same command with the same
--run resumes from the latest checkpoint and continues with exactly the batches an
uninterrupted run would have seen; a larger --steps trains further. A worker that dies is
restarted from the last checkpoint (max_failures).

--preset takes a config preset (demo, full: the train: section of configs/<name>.yaml) or a
model size (tiny, small/S, base/B, large/L, XL) applied on top of the demo preset.
"""

_TRAIN_EPILOG = """\
examples:
  spacetime train data --run runs/tiny --preset tiny --steps 300
  spacetime train data1 data2 --run runs/b --preset full --workers 8
  spacetime train data --run runs/x --set batch_size=8 --set model.depth=4 --set lr=1e-3
  spacetime train data --run runs/x --config my_train.yaml --address ray://head:10001
  spacetime train data --run runs/m --set 'where=[[motion_direction, in, [left, right]]]'
  spacetime train data --run runs/m --set mirror_fraction=0.5
  tensorboard --logdir runs/tiny/tb
"""

_GENERATE_DESCRIPTION = """\
Generate videos from text with a trained run's EMA weights (latest checkpoint under RUN, or a
checkpoint directory). The text encoder, latent codec and default video shape are those the
run was trained with (read from the checkpoint's state.json). Sampling: Euler over the
rectified-flow ODE with classifier-free guidance against the model's learned null caption.
"""

_GENERATE_EPILOG = """\
examples:
  spacetime generate runs/tiny "a red circle moving left" --output red.mp4
  spacetime generate runs/tiny "a blue square moving up" --frames 16 --size 48x32 --steps 30 --cfg 4
  spacetime generate runs/tiny --prompts-file prompts.txt --output out/video.mp4 --seed 3
"""


def _overrides(args: argparse.Namespace) -> dict:
    from common.config import parse_overrides

    return parse_overrides(args.overrides)


def resolve_config(args: argparse.Namespace):
    """The TrainConfig of a ``spacetime train`` invocation (preset, file, --set, flags)."""
    from common.config import CONFIG_DIR, deep_merge
    from train.config import load_train_config
    from train.model import MODEL_PRESETS

    preset, model_preset = args.preset, None
    if not (CONFIG_DIR / f"{preset}.yaml").exists() and not preset.endswith((".yaml", ".yml")):
        model_preset = MODEL_ALIASES.get(preset.lower(), preset)
        if model_preset not in MODEL_PRESETS:
            from common.config import ConfigError

            known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(
                f"--preset {preset!r} is neither a config preset ({', '.join(known)}) nor a "
                f"model size ({', '.join(MODEL_PRESETS)}, small, base, large)"
            )
        preset = "demo"
    over: dict = {}
    if model_preset:
        over["model"] = {"preset": model_preset}
    if args.steps is not None:
        over["steps"] = args.steps
    if args.workers is not None:
        over["workers"] = args.workers
    over = deep_merge(over, _overrides(args))
    return load_train_config(preset, args.config, over)


def handle_train(args: argparse.Namespace) -> int:
    """Run ``spacetime train``."""
    from common.config import ConfigError
    from train.loop import train

    try:
        cfg = resolve_config(args)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    try:
        summary = train(args.inputs, args.run, cfg, address=args.address)
    except ConfigError as e:  # e.g. a resume whose data plan settings changed
        log.error("%s", e)
        return 2
    except (FileNotFoundError, ValueError, ImportError) as e:
        log.error("%s", e)
        return 1
    m = summary.get("metrics") or {}
    print(
        json.dumps(
            {
                "run": summary["run"],
                "resumed": summary["resumed"],
                "start_step": summary["start_step"],
                "final_step": summary["final_step"],
                "pairs": summary.get("pairs"),
                "pairs_total": summary.get("pairs_total"),
                "loss": m.get("loss"),
                "samples_per_s": m.get("samples_per_s"),
                "checkpoint": summary.get("checkpoint"),
            },
            indent=1,
        )
    )
    return 0


def handle_generate(args: argparse.Namespace) -> int:
    """Run ``spacetime generate`` (train.generate.generate_cli)."""
    from train.generate import generate_cli

    return generate_cli(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``generate`` sub-commands."""
    p = subparsers.add_parser(
        "train",
        help="train the video DiT on OUT/pairs with Ray Train (resumable)",
        description=_TRAIN_DESCRIPTION,
        epilog=_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="OUT", help="dataset dirs (OUT/pairs) or shards")
    p.add_argument("--run", required=True, metavar="RUN", help="run directory (created; resumes)")
    p.add_argument(
        "--preset",
        default="demo",
        help="config preset (demo, full) or model size (tiny, small, base, large, XL); "
        "default: demo",
    )
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (train.steps)")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (train.workers)")
    p.add_argument("--config", default=None, metavar="FILE", help="YAML file with a train: section")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set batch_size=8 --set model.depth=4 "
        "--set strategy=fsdp --set text.encoder=google/umt5-xxl (repeatable); "
        "fields: docs/config.md",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray in-process)",
    )
    p.set_defaults(func=handle_train)

    g = subparsers.add_parser(
        "generate",
        help="make video from text with a trained run",
        description=_GENERATE_DESCRIPTION,
        epilog=_GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from train.generate import add_generate_arguments

    add_generate_arguments(g)
    g.set_defaults(func=handle_generate)
