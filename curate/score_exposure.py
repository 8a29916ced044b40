"""Exposure scorer: mean luma, crushed-dark and clipped-bright pixel shares, black detection.

Columns: ``luma_mean`` (0..255), ``dark_frac`` (share of pixels with luma <= dark_level),
``bright_frac`` (share >= bright_level), ``is_black`` (at least black_share of the sampled
frames have mean luma <= black_luma).
"""

from __future__ import annotations

from typing import Any

from curate.score_context import ScoreContext

NAME = "exposure"
COLUMNS = ("luma_mean", "dark_frac", "bright_frac", "is_black")


def score(ctx: ScoreContext) -> dict[str, Any]:
    """Exposure columns of one clip."""
    cfg = ctx.cfg
    g = ctx.gray
    per_frame = g.reshape(len(g), -1).mean(axis=1)
    return {
        "luma_mean": float(per_frame.mean()),
        "dark_frac": float((g <= cfg.dark_level).mean()),
        "bright_frac": float((g >= cfg.bright_level).mean()),
        "is_black": bool((per_frame <= cfg.black_luma).mean() >= cfg.black_share),
    }
