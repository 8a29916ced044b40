"""The funnel: sources seen → ok → scene spans → clips cut → kept → captioned, and every
reject reason with its count at the step where it dropped rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAGES = ("source", "probe", "scenes", "clip", "score", "filter", "dedup", "caption")
"""Reject stages in pipeline order (see schemas.tables.REJECTS)."""

SOURCE_STAGES = ("source", "probe")
SPAN_STAGES = ("scenes",)
CLIP_STAGES = ("clip", "score", "filter", "dedup")
CAPTION_STAGES = ("caption",)


def manifest_reasons(manifest: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``{stage: {reason: n}}`` from a manifest's ``rejects_by_reason`` and ``recaption``
    section, tolerating a nested ``{stage: {reason: n}}``, a flat ``{reason: n}`` (stage
    ``"?"``) or ``"stage/reason"`` / ``"stage:reason"`` keys."""
    out: dict[str, dict[str, int]] = {}

    def add(stage: str, reason: str, n: Any) -> None:
        try:
            out.setdefault(stage, {})[reason] = out.get(stage, {}).get(reason, 0) + int(n)
        except (TypeError, ValueError):
            pass

    def walk(d: Any, default_stage: str) -> None:
        if not isinstance(d, Mapping):
            return
        for k, v in d.items():
            if isinstance(v, Mapping):
                for r, n in v.items():
                    add(str(k), str(r), n)
            else:
                for sep in ("/", ":"):
                    if sep in str(k):
                        s, r = str(k).split(sep, 1)
                        add(s, r, v)
                        break
                else:
                    add(default_stage, str(k), v)

    walk(manifest.get("rejects_by_reason"), "?")
    rec = manifest.get("recaption")
    if isinstance(rec, Mapping):
        walk(rec.get("rejects_by_reason"), "caption")
    return out


def _lost(
    rejects: Mapping[str, Mapping[str, int]], stages: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    return {s: dict(rejects[s]) for s in stages if rejects.get(s)}


def _total(lost: Mapping[str, Mapping[str, int]]) -> int:
    return sum(sum(v.values()) for v in lost.values())


def _minus(
    lost: dict[str, dict[str, int]], part: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    out = {}
    for s, reasons in lost.items():
        left = {r: n - part.get(s, {}).get(r, 0) for r, n in reasons.items()}
        if any(left.values()):
            out[s] = {r: n for r, n in left.items() if n}
    return out


def build_funnel(
    manifest: Mapping[str, Any],
    rejects: Mapping[str, Mapping[str, int]],
    n_clips: int,
    n_pairs: int | None,
    n_sources_table: int | None = None,
    distinct_sources: int | None = None,
    curate_clip_rejects: int | None = None,
    unclipped: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
) -> dict[str, Any]:
    """The funnel from the data (reject rows and table sizes), with the manifest's own counts
    checked against it.

    ``rejects`` is ``{stage: {reason: count}}`` counted from ``OUT/rejects``; ``n_pairs`` is
    None when there are no pairs yet (clips only, before recaption);
    ``curate_clip_rejects`` counts the non-caption reject rows that carry a ``clip_id``;
    ``unclipped`` holds the rows among ``rejects`` past the probe that name no clip:
    ``{"source": {stage: {reason: n}}}`` for sources that failed whole (a split that timed
    out or crashed: no span) and ``{"footage": ...}`` for footage lost from a source that was
    split (a truncated stream, a decode error: a span).
    """
    counts = manifest.get("counts") or {}
    unknown = tuple(s for s in rejects if s not in STAGES)
    failed = {s: dict(v) for s, v in (unclipped or {}).get("source", {}).items() if v}
    footage = {s: dict(v) for s, v in (unclipped or {}).get("footage", {}).items() if v}
    src_lost = {**_lost(rejects, SOURCE_STAGES), **failed}
    seen = counts.get("sources_seen")
    seen_from = "manifest"
    if seen is None:
        seen, seen_from = (
            (n_sources_table, "sources table")
            if n_sources_table
            else (distinct_sources, "distinct source_path in clips and rejects")
        )
    ok = counts.get("sources_ok")
    if ok is None and seen is not None:
        ok = int(seen) - _total(src_lost)
    clip_lost = _minus(_minus(_lost(rejects, CLIP_STAGES + unknown), failed), footage)
    span_lost = _lost(rejects, SPAN_STAGES)
    cut = n_clips + _total(clip_lost)
    steps: list[dict[str, Any]] = [
        {"name": "sources seen", "count": seen, "note": f"from the {seen_from}", "lost": src_lost},
        {"name": "sources ok", "count": ok, "lost": footage,
         "note": "footage not split: damaged, cut short or missing from the timeline"
         if footage else ""},
        {"name": "scene spans", "count": cut + _total(span_lost),
         "note": "clip candidates found by scene detection", "lost": span_lost},
        {"name": "clips cut", "count": cut, "note": "encoded and scored", "lost": clip_lost},
        {"name": "clips kept", "count": n_clips, "lost": {}},
    ]  # fmt: skip
    cap_lost = _lost(rejects, CAPTION_STAGES)
    pending = None
    if n_pairs is not None or cap_lost:
        steps[-1]["lost"] = cap_lost
        pending = max(0, n_clips - (n_pairs or 0) - _total(cap_lost))
        steps.append({"name": "captioned", "count": n_pairs or 0, "lost": {},
                      "note": f"{pending} kept clip(s) not captioned yet" if pending else ""})  # fmt: skip
    for s in steps:
        s["lost_total"] = _total(s["lost"])
    return {
        "steps": steps,
        "pending_caption": pending,
        "rejects_by_stage": {s: dict(v) for s, v in rejects.items()},
        "checks": _checks(
            manifest, rejects, n_clips, n_pairs, curate_clip_rejects, n_sources_table
        ),  # fmt: skip
    }


def _checks(
    manifest, rejects, n_clips, n_pairs, curate_clip_rejects, n_sources_table=None
) -> list[dict[str, Any]]:
    """Manifest counts next to the counts in the tables; ``ok`` False marks a disagreement."""
    counts = manifest.get("counts") or {}
    out = []

    def check(what: str, manifest_value: Any, data_value: Any) -> None:
        if manifest_value is None:
            return
        out.append({"what": what, "manifest": manifest_value, "data": data_value,
                    "ok": manifest_value == data_value})  # fmt: skip

    check("clips_kept = rows of clips/", counts.get("clips_kept"), n_clips)
    if curate_clip_rejects is not None:
        check("clips_rejected = non-caption rejects/ rows with a clip_id",
              counts.get("clips_rejected"), curate_clip_rejects)  # fmt: skip
    seen, ok, failed = (counts.get(k) for k in ("sources_seen", "sources_ok", "sources_failed"))
    dup = counts.get("sources_duplicate", 0)  # older manifests count duplicates as failed
    if n_sources_table is not None:
        check("sources_seen = rows of sources/", seen, n_sources_table)
    elif None not in (seen, ok, failed):  # no sources/ table: the manifest against itself
        check("sources_seen = sources_ok + sources_failed + sources_duplicate (manifest only)",
              seen, ok + failed + dup)  # fmt: skip
    mreasons = manifest_reasons(manifest)
    if mreasons and "?" not in mreasons:
        for stage in sorted(set(mreasons) | set(rejects)):
            if stage in CAPTION_STAGES and not isinstance(manifest.get("recaption"), Mapping):
                continue
            check(f"rejects at stage {stage!r} by reason", mreasons.get(stage, {}),
                  dict(rejects.get(stage, {})))  # fmt: skip
    rec = manifest.get("recaption")
    if isinstance(rec, Mapping) and isinstance(rec.get("counts"), Mapping) and n_pairs is not None:
        check("recaption pairs = rows of pairs/", rec["counts"].get("pairs"), n_pairs)
    return out
