"""Finalize a curate run: staged wave rows → ``OUT/clips``, ``OUT/rejects``, ``OUT/sources``
and ``OUT/manifest.json``.

Reads the complete waves (pyarrow, streaming the clip rows batch by batch), keeps only the
sources of this listing, writes each clip_id once, turns duplicate sources and global-dedup
drops into reject rows, and checks that every source has one row (``sources_seen ==
sources_ok + sources_failed + sources_duplicate``). Every table is validated on write
(``schemas.validate``). Outputs are built under ``OUT/_work/final`` and moved into place, so a
crash here is repaired by the rerun.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.config import CurateConfig, config_dict
from curate.filters import evaluate_rules, rule_columns, unjudged
from curate.manifest import build_manifest, read_manifest, rejects_by_reason, write_json_atomic
from curate.sources import Source
from schemas.tables import CLIPS, REJECTS, SOURCES

log = logging.getLogger(__name__)

_OUTPUTS = ("clips", "rejects", "sources")


def unreadable_id(path: str) -> str:
    """The source_id of a source whose content could not be read: sha256 of its path, hex[:32]
    (no content to hash; the sources and rejects rows of the source still join on it)."""
    return hashlib.sha256(f"spacetime-unreadable:{path}".encode()).hexdigest()[:32]


def _pair_mask(tbl: pa.Table, keys: pa.Array) -> pa.ChunkedArray:
    k = pc.binary_join_element_wise(tbl.column("source_id"), tbl.column("source_path"), "\x00")
    return pc.is_in(k, value_set=keys)


def _keys(pairs: set[tuple[str, str]]) -> pa.Array:
    return pa.array(sorted(f"{a}\x00{b}" for a, b in pairs), pa.string())


def _first_per_pair(tbl: pa.Table) -> pa.Table:
    seen: set[tuple[str, str]] = set()
    keep = []
    ids, paths = tbl.column("source_id").to_pylist(), tbl.column("source_path").to_pylist()
    for sid, path in zip(ids, paths, strict=True):
        keep.append((sid, path) not in seen)
        seen.add((sid, path))
    return tbl.filter(pa.array(keep, pa.bool_()))


def finalize(
    out: Path,
    work: Path,
    run_id: str,
    cfg: CurateConfig,
    sources: Sequence[Source],
    unique: Sequence[Source],
    dups: Sequence[tuple[Source, Source]],
    waves: Sequence[Path],
    address: str | None = None,
) -> dict[str, Any]:
    """Write the final tables and the manifest; returns the manifest."""
    from curate.pipeline import dedup_drops, staged_dataset, wave_owners, write_shards
    from curate.stages import STAGED

    current = {(s.source_id, s.path) for s in unique if not s.error}
    owner = wave_owners(waves)
    # each source's rows come from the wave that processed it last (a retried source's
    # earlier failure rows stay behind in the earlier wave)
    parts = []
    for w in waves:
        mine = {p for p in current if owner.get(p) == w}
        if mine:
            parts.append((staged_dataset([w]), _keys(mine)))
    kind = pc.field("_kind")

    def staged_rows(k: str, columns: list[str]) -> pa.Table:
        empty = pa.Table.from_pylist([], schema=pa.schema([STAGED.field(c) for c in columns]))
        tables = [empty]
        for ds, keys in parts:
            t = ds.to_table(columns=columns, filter=kind == k)
            tables.append(t.filter(_pair_mask(t, keys)))
        t = pa.concat_tables(tables)
        return _first_per_pair(t) if k == "source" else t

    src_tbl = staged_rows("source", [f.name for f in SOURCES])
    rej_tbl = staged_rows("reject", [f.name for f in REJECTS])
    extra_src: list[dict[str, Any]] = []
    extra_rej: list[dict[str, Any]] = []
    for s in unique:
        if s.error:
            sid = s.source_id or unreadable_id(s.path)
            extra_src.append({"source_id": sid, "source_path": s.path,
                              "size_bytes": s.size, "status": "failed", "num_clips": 0,
                              "error": f"unreadable_source: {s.error}"})  # fmt: skip
            extra_rej.append({"source_path": s.path, "source_id": sid, "stage": "source",
                              "reason": "unreadable_source", "detail": s.error})  # fmt: skip
    for dup, orig in dups:
        extra_src.append({"source_id": dup.source_id, "source_path": dup.path, "size_bytes": dup.size,
                          "status": "duplicate", "num_clips": 0,
                          "error": f"duplicate_source: same content as {orig.path}"})  # fmt: skip
        extra_rej.append({"source_path": dup.path, "source_id": dup.source_id, "stage": "source",
                          "reason": "duplicate_source", "detail": f"same content as {orig.path}"})  # fmt: skip

    drops = dedup_drops(waves, {sid for sid, _ in current}, cfg, address) if parts else {}
    dedup_rej: list[dict[str, Any]] = []
    final = work / "final"
    salvage = _salvage_caption_rejects(out, work)  # before final/ (and what it holds) goes
    shutil.rmtree(final, ignore_errors=True)

    kept_ids: set[str] = set()
    kept_per_source: Counter[str] = Counter()
    # score_only keeps every clip; what the filters would have dropped is still counted
    would_drop: Counter[str] | None = Counter() if cfg.filters.score_only else None
    # a rule cannot judge a clip whose score is null (its scorer failed, or OCR is not
    # installed): such clips pass it, and are counted
    not_judged: Counter[str] = Counter()
    rule_cols = rule_columns(cfg.filters)

    def batches() -> Iterator[pa.Table]:
        for ds, keys in parts:
            for batch in ds.to_batches(filter=kind == "clip", batch_size=64):
                t = pa.Table.from_batches([batch])
                yield t.filter(_pair_mask(t, keys))

    def clip_tables() -> Iterator[pa.Table]:
        seen: set[str] = set()
        for t in batches():
            keep = []
            for i, cid in enumerate(t.column("clip_id").to_pylist()):
                ok = cid not in seen and cid not in drops
                if cid in drops and cid not in seen:
                    d = drops[cid]
                    dedup_rej.append({
                        "source_path": t.column("source_path")[i].as_py(),
                        "source_id": t.column("source_id")[i].as_py(), "clip_id": cid,
                        "stage": "dedup", "reason": d.get("reason", "near_duplicate"),
                        "detail": d.get("detail"), "value": d.get("value"),
                        "kept_clip_id": d.get("kept_clip_id"),
                        "start_s": t.column("start_s")[i].as_py(), "end_s": t.column("end_s")[i].as_py(),
                    })  # fmt: skip
                seen.add(cid)
                keep.append(ok)
            if any(keep):
                kept = t.filter(pa.array(keep, pa.bool_()))
                kept_ids.update(kept.column("clip_id").to_pylist())
                kept_per_source.update(kept.column("source_id").to_pylist())
                not_judged.update(unjudged(kept, cfg.filters))
                if would_drop is not None:
                    cols = [c for c in rule_cols if c in kept.column_names]
                    for row in kept.select(cols).to_pylist():
                        if trips := evaluate_rules(row, cfg.filters):  # the first names it
                            would_drop[trips[0]["reason"]] += 1
                yield kept

    clips_kept = write_shards(clip_tables(), final / "clips", "clips", cfg)
    all_rej = pa.concat_tables(
        [rej_tbl, pa.Table.from_pylist(extra_rej + dedup_rej, schema=rej_tbl.schema)]
    )
    write_shards([all_rej], final / "rejects", "rejects", cfg)
    # num_clips: the source's clips in OUT/clips (after filters and dedup), not those cut
    counted = pa.array(
        [kept_per_source.get(s, 0) for s in src_tbl.column("source_id").to_pylist()], pa.int32()
    )
    src_tbl = src_tbl.set_column(src_tbl.schema.get_field_index("num_clips"), "num_clips", counted)
    all_src = pa.concat_tables([src_tbl, pa.Table.from_pylist(extra_src, schema=src_tbl.schema)])
    write_shards([all_src], final / "sources", "sources", cfg)

    statuses = all_src.column("status").to_pylist()
    ok = sum(1 for s in statuses if s == "ok")
    if len(statuses) != len(sources):
        raise RuntimeError(
            f"internal error: {len(statuses)} source rows for {len(sources)} sources"
        )
    rej_rows = all_rej.select(["stage", "reason", "clip_id"]).to_pylist()
    counts = {
        "sources_seen": len(sources),
        "sources_ok": ok,
        "sources_failed": sum(1 for s in statuses if s == "failed"),
        "sources_duplicate": sum(1 for s in statuses if s == "duplicate"),
        "clips_kept": clips_kept,
        "clips_rejected": sum(1 for r in rej_rows if r["clip_id"] is not None),
    }
    # recaption's outputs in OUT survive a rerun, less the clips no longer kept
    caption = [*(out / "rejects").glob(f"{CAPTION_REJECTS}*.parquet"),
               *salvage.glob(f"{CAPTION_REJECTS}*.parquet")]  # fmt: skip
    kept_set = pa.array(sorted(kept_ids), pa.string())  # built once for every shard below
    for f in sorted(caption):
        _keep_clips(f, final / "rejects" / f.name, "rejects", kept_set)
    for name in _OUTPUTS:  # the old table is moved aside, never deleted before the new is in
        dst, aside = out / name, work / f"old-{name}"
        shutil.rmtree(aside, ignore_errors=True)
        if dst.exists():
            dst.rename(aside)
        (final / name).rename(dst)
    for name in _OUTPUTS:
        shutil.rmtree(work / f"old-{name}", ignore_errors=True)
    shutil.rmtree(salvage, ignore_errors=True)
    _refresh_pairs(out, kept_set)
    manifest = build_manifest(
        run_id, config_dict(cfg), counts, rejects_by_reason(rej_rows),
        extra={"waves": len(waves), "rejects": len(rej_rows),
               **({} if would_drop is None else {"filters_would_drop": dict(would_drop)}),
               **({"filters_unjudged": dict(not_judged)} if not_judged else {})},
    )  # fmt: skip
    try:
        previous = read_manifest(out)
    except (OSError, ValueError):
        previous = {}
    if "recaption" in previous:
        from recaption.pipeline import totals

        manifest["recaption"] = {**previous["recaption"], **totals(out)}
    write_json_atomic(out / "manifest.json", manifest)
    shutil.rmtree(final, ignore_errors=True)
    return manifest


CAPTION_REJECTS = "caption-"
"""Prefix of recaption's reject shards in OUT/rejects (``recaption.pipeline.REJECT_PREFIX``)."""


def _salvage_caption_rejects(out: Path, work: Path) -> Path:
    """recaption's reject shards left in ``_work`` by a finalize killed mid-swap (in the old
    rejects table moved aside, or in the new one not yet moved in), moved to
    ``_work/caption-rejects`` unless OUT/rejects has them; returns that folder."""
    salvage = work / "caption-rejects"
    for d in (work / "old-rejects", work / "final" / "rejects"):
        for f in sorted(d.glob(f"{CAPTION_REJECTS}*.parquet")):
            if not (out / "rejects" / f.name).exists() and not (salvage / f.name).exists():
                salvage.mkdir(parents=True, exist_ok=True)
                shutil.move(str(f), salvage / f.name)
                log.info("recovered caption rejects %s from an interrupted finalize", f.name)
    return salvage


def _keep_clips(src: Path, dst: Path, table: str, kept_ids: pa.Array) -> None:
    """Copy the Parquet table ``src`` to ``dst`` without the rows of clips not in
    ``kept_ids``; no file when no row is left."""
    from schemas.validate import filter_file

    dropped = filter_file(src, lambda t: pc.is_in(t.column("clip_id"), value_set=kept_ids),
                          table, dst)  # fmt: skip
    if dropped:
        log.info("%s: %d row(s) of clips no longer kept dropped", src, dropped)


_VIDEO_SHAPE = ("start_s", "end_s", "fps", "num_frames", "width", "height")
"""Columns that describe a clip's video: a pair whose differ from its clip's was captioned from
another cut of the span (a new split of it), and is dropped to be captioned again."""


def _refresh_pairs(out: Path, kept_ids: pa.Array) -> None:
    """recaption's pairs after a curate rerun: the rows of clips no longer kept dropped, and
    every clip column but ``video`` taken from the new ``OUT/clips`` (a source renamed or
    found under another path, scores of changed scorer settings: the clip_id is the same);
    the caption and the video it was made from stay, unless the clip's video changed shape
    (``_VIDEO_SHAPE``): then the pair is dropped and its clip is captioned again. Each shard
    is read once and written at most once."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from schemas.validate import commit_table

    files = sorted((out / "pairs").glob("*.parquet"))
    wanted: set[str] = set()
    for f in files:
        wanted.update(pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist())
    names = [c for c in CLIPS.names if c != "video"]
    fresh = None
    if wanted:
        clips = pads.dataset(str(out / "clips"), format="parquet")
        fresh = clips.to_table(
            columns=[c for c in names if c in clips.schema.names],
            filter=pads.field("clip_id").isin(pa.array(sorted(wanted), pa.string())),
        )
    row = {} if fresh is None else {c: i for i, c in enumerate(fresh.column("clip_id").to_pylist())}
    for f in files:
        tbl = pq.read_table(f)
        n = tbl.num_rows
        tbl = tbl.filter(pc.is_in(tbl.column("clip_id"), value_set=kept_ids))
        if tbl.num_rows < n:
            log.info("%s: %d row(s) of clips no longer kept dropped", f, n - tbl.num_rows)
        if tbl.num_rows:
            new = fresh.take(
                pa.array([row[c] for c in tbl.column("clip_id").to_pylist()], pa.int64())
            )
            same = pa.array([True] * tbl.num_rows, pa.bool_())
            for name in _VIDEO_SHAPE:
                eq = pc.equal(new.column(name).cast(tbl.schema.field(name).type), tbl.column(name))
                same = pc.and_(same, pc.fill_null(eq, False))
            if not pc.all(same).as_py():
                log.info("%s: %d pair(s) of clips cut anew dropped (to caption again)", f,
                         tbl.num_rows - pc.sum(same).as_py())  # fmt: skip
                tbl, new = tbl.filter(same), new.filter(same)
        if tbl.num_rows == 0:
            if n:
                f.unlink()
            continue
        changed = tbl.num_rows < n
        for name in new.column_names:
            i = tbl.schema.get_field_index(name)
            if name == "clip_id" or i < 0:
                continue
            col = new.column(name).cast(tbl.schema.field(name).type)
            if not col.equals(tbl.column(name)):
                tbl, changed = tbl.set_column(i, tbl.schema.field(name), col), True
        if changed:
            log.info("%s: clip columns refreshed from OUT/clips", f)
            commit_table(tbl, f, "pairs")
