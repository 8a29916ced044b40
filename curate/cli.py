"""``spacetime curate``: raw footage → clips/, rejects/, sources/, manifest.json (Ray Data)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Cut raw footage into short, clean, scored clips with a Ray Data job.

INPUT may be video files, directories (searched recursively for video extensions),
globs ('footage/**/*.mp4') or remote URIs read through pyarrow.fs (s3://bucket/prefix/).
Each source gets a content-hash source_id; identical content under two names is processed
once (the other becomes a `duplicate_source` reject).

Per source (isolated child process under a timeout, so a hanging or crashing decoder is a
reject row, not a dead job): probe with PyAV → one decoding pass (decord, PyAV fallback)
feeding PySceneDetect on downscaled frames, dark-stretch/fade detection and the span plan
(min_seconds..max_seconds, frames trimmed at every cut) → rotate, resize (short side <=
short_side, never upscaled), resample to fps, re-encode H.264/MP4 → weight-free scores on
the same frames → [model scorers] → filters. After every source: global near-duplicate
removal, then the output tables:

  OUT/clips/part-*.parquet    one row per kept clip (video bytes + every score)
  OUT/rejects/part-*.parquet  one row per dropped clip or failed source (stage, reason, detail)
  OUT/sources/part-*.parquet  one row per source found (probe facts, status, num_clips)
  OUT/manifest.json           run id, config, code and schema version, counts

Rerunning the same command resumes: finished sources (OUT/_work) are skipped, a clip is
never written twice, clip_id is stable. Every file written lies under OUT.
"""

_EPILOG = """\
examples:
  spacetime curate footage/ --output data
  spacetime curate 'raw/**/*.mov' s3://bucket/videos/ --output data --preset full
  spacetime curate footage/ --output data --set max_seconds=6 --set filters.min_motion=0.5
  spacetime curate footage/ --output data --address ray://head:10001
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``curate`` sub-command."""
    p = subparsers.add_parser(
        "curate",
        help="cut raw footage into scored, filtered, deduplicated clips (Ray Data)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="files, directories, globs, s3:// URIs"
    )
    p.add_argument("--output", "-o", required=True, metavar="OUT", help="output directory")
    p.add_argument("--preset", default="demo", help="config preset: demo | full (default: demo)")
    p.add_argument(
        "--config", default=None, metavar="FILE", help="YAML file with a curate: section"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set fps=8 --set dedup.enabled=false (repeatable)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray in-process)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard earlier curate work in OUT instead of resuming (recaption's pairs and caption "
        "rejects of clips the new run keeps stay; those of other clips go)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data progress bars")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the job; print the closing summary; 0 on success, 2 on a config error."""
    from common.config import ConfigError, load_stage_config, parse_overrides
    from curate.config import CurateConfig
    from curate.manifest import summary
    from curate.pipeline import run_curate

    try:
        cfg = load_stage_config(
            CurateConfig, "curate", args.preset, args.config, parse_overrides(args.overrides)
        )
    except ConfigError as e:
        log.error("%s", e)
        return 2
    if args.no_progress:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        manifest = run_curate(args.inputs, args.output, cfg, args.address, restart=args.restart)
    except (ConfigError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2
    print(f"\ncurate finished: {args.output}\n{summary(manifest)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m curate.cli INPUT... --output OUT``: the same command without the other
    stages' sub-commands (what ``spacetime curate`` runs)."""
    import sys

    parser = argparse.ArgumentParser(prog="spacetime")
    register(parser.add_subparsers(dest="command"))
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "curate":
        argv = ["curate", *argv]
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
