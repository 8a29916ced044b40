"""The stages of ``spacetime curate`` (plain functions and a callable class; Ray runs them in
``curate.pipeline``) and the staged rows they pass on: clips, rejects and per-source rows."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.clips import failed_source, process_source
from curate.config import CurateConfig
from curate.sources import local_copy
from schemas.tables import CLIPS, REJECTS, SOURCES


def _staged_schema() -> pa.Schema:
    fields: dict[str, pa.Field] = {"_kind": pa.field("_kind", pa.string())}
    for schema in (CLIPS, REJECTS, SOURCES):
        for f in schema:
            if f.name in fields and not fields[f.name].type.equals(f.type):
                raise TypeError(f"staged column {f.name}: {fields[f.name].type} vs {f.type}")
            fields.setdefault(f.name, pa.field(f.name, f.type, nullable=True))
    fields["_key_frames"] = pa.field("_key_frames", pa.list_(pa.binary()))
    fields["_score_error"] = pa.field("_score_error", pa.string())
    return pa.schema(list(fields.values()))


STAGED = _staged_schema()
"""Rows between stages: clips, rejects and per-source rows in one table, told apart by _kind."""


def to_staged(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Row dicts (any subset of the staged columns) as a staged table."""
    return pa.Table.from_pylist(list(rows), schema=STAGED)


def split_batch(batch: pa.Table, cfg: CurateConfig, scratch: str) -> pa.Table:
    """Split stage: every source in ``batch`` → its source, clip and reject rows."""
    rows: list[dict[str, Any]] = []
    for item in batch.to_pylist():
        path, sid = item["source_path"], item["source_id"]
        local = None
        try:
            local = local_copy(path, scratch, f"{sid}-{uuid.uuid4().hex[:8]}")
        except OSError as e:
            src = {"source_id": sid, "source_path": path, "size_bytes": item["size"]}
            rows.extend(failed_source(src, "source", "unreadable_source", str(e)))
            continue
        try:
            rows.extend(process_source(local, sid, path, int(item["size"]), cfg))
        finally:
            if local != path and local is not None and os.path.exists(local):
                os.unlink(local)
    return to_staged(rows)


def filter_batch(batch: pa.Table, cfg: CurateConfig) -> pa.Table:
    """Filter stage: a clip whose model scorer failed becomes a ``stage=score`` reject
    (reason ``model_error``); a clip failing a rule a ``stage=filter`` reject (video dropped)."""
    from curate.filters import apply_filters

    rows = batch.to_pylist()
    for r in rows:
        r["_key_frames"] = None
        error = r.pop("_score_error", None)
        if r["_kind"] != "clip":
            continue
        if error:
            r.update(_kind="reject", stage="score", video=None, reason="model_error",
                     detail=error)  # fmt: skip
            continue
        drop = apply_filters(r, cfg.filters)
        if drop is not None:
            r.update(_kind="reject", stage="filter", video=None, reason=drop["reason"],
                     detail=drop.get("detail"), value=drop.get("value"))  # fmt: skip
    return to_staged(rows)


def split_and_filter_batch(batch: pa.Table, cfg: CurateConfig, scratch: str) -> pa.Table:
    """Split then filter stage in one task (the wave without a model-scoring stage)."""
    return filter_batch(split_batch(batch, cfg, scratch), cfg)


class ModelStage:
    """Runs ``curate.model_scores.ModelScorer`` on the clip rows of a batch (others pass)."""

    def __init__(self, cfg: Any):
        from curate.model_scores import ModelScorer

        self.scorer = ModelScorer(cfg)

    def __call__(self, batch: pa.Table) -> pa.Table:
        is_clip = pc.equal(batch.column("_kind"), "clip")
        clips = batch.filter(is_clip)
        if clips.num_rows == 0:
            return batch
        scored = self.scorer(clips)
        if not isinstance(scored, pa.Table):
            scored = pa.Table.from_pydict({k: list(v) for k, v in scored.items()})
        others = batch.filter(pc.invert(is_clip)).to_pylist()
        return to_staged(scored.to_pylist() + others)
