"""``spacetime recaption``: OUT/clips → OUT/pairs (caption + lineage) and caption rejects."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Write a dense caption for every clip in OUT/clips with a Ray Data job, and store the
text-video pairs in OUT/pairs (every clip column + caption, caption_short, caption_source,
caption_model_revision, caption_prompt_version, captioned_at, caption_words, alignment).

Back ends (--backend):
  attributes    offline, no weights: a caption built only from what curate measured
                (colours, motion direction, camera movement, lighting, duration, size);
                caption_source = "attributes". The demo default. Names no objects.
  transformers  a vision-language model that AutoModelForImageTextToText loads (Qwen2.5-VL,
                Qwen3-VL, SmolVLM2, LLaVA-OneVision, ...) by hub id or local directory; N
                frames per clip (prepared on CPU workers) through the chat template; batched
                generate, bfloat16 on GPU; a Ray Data actor pool of `replicas` x `num_gpus`.
  openai        an OpenAI-compatible chat-completions server (vLLM, SGLang, hosted): frames as
                base64 JPEG; bounded concurrency; retries with backoff on 429/5xx (Retry-After
                honoured) and timeouts. Key from $OPENAI_API_KEY (recaption.api_key_env).

Every caption goes through QA; a failing clip becomes a row in OUT/rejects/caption-*.parquet
(stage=caption) with reason empty | refusal | repetition_loop | truncated | too_short |
too_long | model_error | server_error | decode_error | low_alignment. Leading boilerplate
("The video shows ...") is stripped. With recaption.alignment=true each pair gets the mean
open_clip caption-frame cosine similarity, and recaption.min_alignment drops weak pairs.

Rerunning resumes: clips already in OUT/pairs or in a caption reject are skipped, so no clip
is captioned twice; shards are written under temporary names and renamed. Counts go to the
`recaption` key of OUT/manifest.json. Missing weights stop the job before it starts.
"""

_EPILOG = """\
examples:
  spacetime recaption data                                   # attributes, offline
  spacetime recaption data --backend transformers --model Qwen/Qwen2.5-VL-7B-Instruct \\
      --preset full --set replicas=4
  spacetime recaption data --backend transformers --model /models/qwen2.5-vl-7b --set num_gpus=1
  vllm serve Qwen/Qwen2.5-VL-7B-Instruct --port 8000 &
  spacetime recaption data --backend openai --model Qwen/Qwen2.5-VL-7B-Instruct \\
      --set base_url=http://gpu-host:8000/v1 --set max_concurrency=32
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``recaption`` sub-command."""
    p = subparsers.add_parser(
        "recaption",
        help="caption curated clips into text-video pairs (VLM, OpenAI-compatible server, or attributes)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="a curate output directory (reads OUT/clips)")
    p.add_argument(
        "--backend",
        choices=("attributes", "transformers", "openai"),
        default=None,
        help="caption back end (default: the preset's, attributes in demo)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="ID_OR_DIR",
        help="transformers: hub id or local directory; openai: the served model name",
    )
    p.add_argument("--preset", default="demo", help="config preset: demo | full (default: demo)")
    p.add_argument(
        "--config", default=None, metavar="FILE", help="YAML file with a recaption: section"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set num_frames=4 --set base_url=http://h:8000/v1",
    )
    p.add_argument(
        "--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local Ray)"
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="caption at most N new clips"
    )
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data progress bars")
    p.set_defaults(func=handle)


def load_config(args: argparse.Namespace):
    """The RecaptionConfig of a parsed command line (preset, --config, --set, flags)."""
    from common.config import load_stage_config, parse_overrides
    from recaption.config import RecaptionConfig

    over = parse_overrides(args.overrides)
    if args.backend:
        over["backend"] = args.backend
    if args.model:
        over["model"] = args.model
    return load_stage_config(RecaptionConfig, "recaption", args.preset, args.config, over)


def handle(args: argparse.Namespace) -> int:
    """Run the job; print a closing summary; 0 on success, 2 on a config or weights error."""
    from common.config import ConfigError
    from recaption.base import WeightsMissing
    from recaption.pipeline import run_recaption
    from schemas.validate import SchemaError

    try:
        cfg = load_config(args)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    if args.no_progress:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        section = run_recaption(args.out, cfg, args.address, limit=args.limit)
    except (ConfigError, WeightsMissing, FileNotFoundError, SchemaError) as e:
        log.error("%s", e)
        return 2
    c, last = section["counts"], section["last_run"]
    reasons = ", ".join(f"{k}={v}" for k, v in section["rejects_by_reason"].items()) or "none"
    print(
        f"\nrecaption finished: {args.out} ({cfg.backend}{': ' + cfg.model if cfg.model else ''})\n"
        f"this run: {last['captioned']} captioned, {last['rejected']} rejected, "
        f"{last['skipped_done']} already done, {last['recovered']} recovered from an "
        f"interrupted run, {last['seconds']}s\n"
        f"total:    {c['pairs']} pairs, {c['caption_rejected']} rejected of {c['clips_seen']} clips "
        f"({c['pending']} pending)\nrejects:  {reasons}"
    )
    return 0
