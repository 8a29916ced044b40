"""Declarative clip filters: each rule of ``FilterConfig`` is a named check on one score.

Rules run in the fixed order of ``RULES`` (the order of FilterConfig's fields); the first rule
that trips names the drop: ``{"reason": rule name, "detail": "motion=0.0100 < min_motion=0.05",
"value": 0.01}``, written as a ``stage=filter`` reject. A null score (scorer disabled or failed)
never trips its rule: the manifest's ``filters_unjudged`` counts the kept clips each rule could
not judge; ``check_filter_config`` refuses, at start, a rule whose scorer is off.
With ``score_only`` nothing is dropped; finalize counts what would be (``evaluate_rules``) in
the manifest's ``filters_would_drop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.config import ConfigError
from curate.score_config import DedupConfig, FilterConfig, ScoreConfig


@dataclass(frozen=True)
class Rule:
    """One filter rule: the FilterConfig field, the reason it writes, the score it reads."""

    field: str
    reason: str
    column: str
    kind: str  # min | max | flag | not_in


RULES: tuple[Rule, ...] = (
    Rule("drop_black", "black", "is_black", "flag"),
    Rule("drop_frozen", "frozen", "is_frozen", "flag"),
    Rule("min_seconds", "min_seconds", "seconds", "min"),
    Rule("min_luma", "min_luma", "luma_mean", "min"),
    Rule("max_luma", "max_luma", "luma_mean", "max"),
    Rule("max_dark_frac", "max_dark_frac", "dark_frac", "max"),
    Rule("max_bright_frac", "max_bright_frac", "bright_frac", "max"),
    Rule("max_static_frac", "max_static_frac", "static_frac", "max"),
    Rule("min_motion", "min_motion", "motion", "min"),
    Rule("max_motion", "max_motion", "motion", "max"),
    Rule("min_sharpness", "min_sharpness", "sharpness", "min"),
    Rule("min_colorfulness", "min_colorfulness", "colorfulness", "min"),
    Rule("camera_motion_not_in", "camera_motion", "camera_motion", "not_in"),
    Rule("max_text_area", "max_text_area", "text_area", "max"),
    Rule("min_aesthetic", "min_aesthetic", "aesthetic", "min"),
    Rule("max_nsfw", "max_nsfw", "nsfw", "max"),
)
"""Every rule, in evaluation order."""

REASONS = tuple(r.reason for r in RULES)
"""Every reason a filter reject can carry."""

SECONDS_TOLERANCE = 1e-6
"""A clip's length (end_s - start_s, from float timestamps) may fall short of ``min_seconds`` by
this much and still pass, as the split's own span planning allows."""


def _seconds(row: dict[str, Any]) -> float | None:
    if row.get("start_s") is not None and row.get("end_s") is not None:
        return float(row["end_s"]) - float(row["start_s"])
    if row.get("num_frames") and row.get("fps"):
        return float(row["num_frames"]) / float(row["fps"])
    return None


def _fmt(value: float, limit: float) -> tuple[str, str]:
    """The limit as configured, and the value with the digits that tell it from the limit (4
    where they do)."""
    b = f"{limit:g}" if float(f"{limit:g}") == limit else repr(limit)
    for digits in (4, 6, 8, 10, 12):
        a = f"{value:.{digits}g}"
        if a != b:
            return a, b
    return repr(value), b


def _active(rule: Rule, cfg: FilterConfig) -> bool:
    setting = getattr(cfg, rule.field)
    return not (setting is None or setting is False or setting == ())


def _check(rule: Rule, row: dict[str, Any], cfg: FilterConfig) -> dict[str, Any] | None:
    if not _active(rule, cfg):
        return None
    setting = getattr(cfg, rule.field)
    value = _seconds(row) if rule.column == "seconds" else row.get(rule.column)
    if value is None or (isinstance(value, float) and value != value):  # null / NaN: no verdict
        return None
    if rule.kind == "flag":
        if bool(value):
            return {
                "reason": rule.reason,
                "detail": f"{rule.column}=true ({rule.field})",
                "value": 1.0,
            }
        return None
    if rule.kind == "not_in":
        if value not in setting:
            return None
        conf = row.get("camera_confidence")
        if cfg.min_camera_confidence is not None and (
            conf is None or conf < cfg.min_camera_confidence
        ):
            return None
        detail = f"{rule.column}={value} in {rule.field}={list(setting)}"
        return {
            "reason": rule.reason,
            "detail": detail,
            "value": None if conf is None else float(conf),
        }
    v = float(value)
    slack = SECONDS_TOLERANCE if rule.column == "seconds" else 0.0
    if rule.kind == "min" and v < setting - slack:
        a, b = _fmt(v, setting)
        return {"reason": rule.reason, "detail": f"{rule.column}={a} < {rule.field}={b}",
                "value": v}  # fmt: skip
    if rule.kind == "max" and v > setting:
        a, b = _fmt(v, setting)
        return {"reason": rule.reason, "detail": f"{rule.column}={a} > {rule.field}={b}",
                "value": v}  # fmt: skip
    return None


def rule_columns(cfg: FilterConfig) -> list[str]:
    """The clip columns the active rules read (``seconds`` from the span or frame count)."""
    cols = {r.column for r in RULES if _active(r, cfg)}
    if "seconds" in cols:
        cols |= {"start_s", "end_s", "num_frames", "fps"}
    if "camera_motion" in cols:
        cols.add("camera_confidence")
    return sorted(cols - {"seconds"})


def unjudged(table: Any, cfg: FilterConfig) -> dict[str, int]:
    """Per active rule, the rows of a pyarrow ``table`` whose score is null or NaN: the rule
    could not judge them, so they passed it (a scorer that failed, or OCR not installed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for r in RULES:
        if not _active(r, cfg) or r.column == "seconds" or r.column not in table.column_names:
            continue
        col = table.column(r.column)
        missing = pc.is_null(col, nan_is_null=pa.types.is_floating(col.type))
        n = int(pc.sum(missing).as_py() or 0)
        if n:
            out[r.reason] = n
    return out


def evaluate_rules(row: dict[str, Any], cfg: FilterConfig) -> list[dict[str, Any]]:
    """Every rule ``row`` trips, in rule order (also under ``score_only``: for reporting)."""
    return [d for rule in RULES if (d := _check(rule, row, cfg)) is not None]


def apply_filters(row: dict[str, Any], cfg: FilterConfig) -> dict[str, Any] | None:
    """None when ``row`` is kept, else the first tripped rule's drop ``{reason, detail, value}``."""
    if cfg.score_only:
        return None
    for rule in RULES:
        drop = _check(rule, row, cfg)
        if drop is not None:
            return drop
    return None


def check_filter_config(
    filter_cfg: FilterConfig, score_cfg: ScoreConfig, dedup_cfg: DedupConfig | None = None
) -> None:
    """Raise ConfigError for a rule (or embedding dedup) that can never apply because its
    scorer is off."""
    problems = []
    if (
        dedup_cfg is not None
        and dedup_cfg.enabled
        and dedup_cfg.embedding
        and not score_cfg.clip_model
    ):
        problems.append("curate.dedup.embedding needs curate.score.clip_model")
    if filter_cfg.max_text_area is not None and not score_cfg.ocr:
        problems.append("max_text_area needs curate.score.ocr=true")
    if filter_cfg.min_aesthetic is not None and not score_cfg.aesthetic_head:
        problems.append("min_aesthetic needs curate.score.aesthetic_head (and clip_model)")
    if filter_cfg.max_nsfw is not None and not score_cfg.nsfw_model:
        problems.append("max_nsfw needs curate.score.nsfw_model")
    if problems:
        raise ConfigError("curate.filters: " + "; ".join(problems))
