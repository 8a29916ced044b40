"""``spacetime report OUT [--output OUT/report]``: the dataset report (HTML + JSON)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

HELP = """\
Audit a dataset before training: writes OUT/report/index.html (one self-contained page,
plots inline, nothing fetched) and OUT/report/report.json (the same numbers for machines).

The page shows the funnel (sources seen -> ok -> scene spans -> clips -> kept -> captioned)
with every reject reason and its count; distributions of duration, resolution, aspect
ratio, fps and every score; camera-motion classes; a per-source breakdown; caption length,
caption sources, vocabulary and top n-grams; a bias audit of the captions (gender, age,
skin tone / ethnicity, region, language and disability terms; co-occurrence with activities,
settings and occupations; representation shares and reject rates with 95% Wilson
intervals); a gallery of kept and rejected clips; and the run's lineage.

Works on curate output (clips/, rejects/, manifest.json) and after recaption (pairs/).
Statistics are Ray Data aggregations over the shards, so memory stays bounded for
millions of clips.

examples:
  spacetime report data/
  spacetime report data/ --output /tmp/audit --terms my_terms/ --set bins=50
  spacetime report s3://bucket/run1 --output audit/ --address auto
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``spacetime report``."""
    p = subparsers.add_parser(
        "report", help="dataset report: funnel, distributions, bias audit, gallery (HTML + JSON)",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "out", metavar="OUT", help="a curate / recaption output directory (local or s3://)"
    )
    p.add_argument(
        "--output",
        default=None,
        help="where to write index.html and report.json (default OUT/report)",
    )
    p.add_argument("--terms", default=None, metavar="DIR",
                   help="extra term lists (*.yaml) for the bias audit, merged over report/terms "
                        "(a category with the same name replaces the packaged one)")  # fmt: skip
    p.add_argument("--preset", default="demo", help="config preset: demo | full (section report:)")
    p.add_argument(
        "--config", default=None, metavar="FILE", help="a YAML file with a report: section"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ReportConfig field, e.g. --set bins=50 --set gallery_kept=24")  # fmt: skip
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the report; 0 on success, 1 when OUT holds nothing to report on."""
    from common.config import ConfigError, load_stage_config, parse_overrides
    from report.bias import TermsError
    from report.build import build_report
    from report.config import ReportConfig

    try:
        overrides = parse_overrides(args.set)
        if args.terms:
            overrides["terms_dir"] = args.terms
        cfg = load_stage_config(ReportConfig, "report", args.preset, args.config, overrides)
        rep = build_report(args.out, args.output, cfg, address=args.address)
    except (ConfigError, TermsError, FileNotFoundError) as e:
        log.error("%s", e)
        return 1
    dest = args.output or f"{str(args.out).rstrip('/')}/report"
    steps = ", ".join(f"{s['name']} {s['count']}" for s in rep["funnel"]["steps"])
    print(f"report: {dest}/index.html  ({steps})")
    return 0
