"""The index of the pair shards training reads: where each pair lives, and its captions.

``pair_files(inputs)`` lists ``OUT/pairs/*.parquet`` of every input; ``scan_pairs`` reads the
light columns (clip id, size, frame count, caption; never the video bytes) with pyarrow and
records where each row lives (file, row group, row), sorted by ``clip_id`` so the order does
not depend on file listing. Captions (the dense one; with ``short_caption_fraction`` the
one-sentence one too) get an index into the caption-embedding table (``train.loop`` fills it
once per caption with ``train.embeddings.embed_captions``, a Ray Data actor stage).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.validate import check_file
from train.augment import CODES, augmented_caption

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["clip_id", "num_frames", "width", "height", "fps", "caption"]
"""Columns the index reads (the ``video`` bytes are read only by the decode tasks)."""
CAPTION_KINDS = ("caption", "caption_short")
"""The captions a sample can train on: the dense one and (``short_caption_fraction``) the short."""


def pair_files(inputs: Sequence[str | Path]) -> list[str]:
    """Parquet files of each input: ``OUT`` (reads ``OUT/pairs/``), a directory, or a file."""
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            found = [p]
        elif (p / "pairs").is_dir():
            found = sorted((p / "pairs").glob("*.parquet"))
        elif p.is_dir():
            found = sorted(p.glob("*.parquet"))
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
        if not found:
            raise FileNotFoundError(f"{item}: no pair shards (looked for {p}/pairs/*.parquet)")
        files.extend(str(f) for f in found)
    return files


def _table_of(path: str) -> str:
    meta = pq.read_schema(path).metadata or {}
    name = (meta.get(b"spacetime.table") or b"pairs").decode()
    return name if name in ("pairs", "latents") else "pairs"


def scan_pairs(
    files: Sequence[str],
    where: Sequence[Sequence[Any]] = (),
    variants: bool = False,
    short: bool = False,
) -> pa.Table:
    """Index of all pairs: ``INDEX_COLUMNS`` plus ``file``, ``row_group``, ``row``, ``caption_idx``.

    Sorted by ``clip_id``; a clip id seen in more than one file is kept once (first file).
    ``where`` (``train.where``: ``[column, op, value]`` conditions, all must hold) keeps only
    the pairs that meet it; the schema metadata ``spacetime.pairs_total`` counts them all.
    ``variants`` adds ``caption_variants`` (the caption under each ``train.augment.CODES``) and
    their ``caption_variant_idx``; ``caption_idx`` then counts them among the captions.
    ``short`` adds ``caption_short`` (the pair's one-sentence caption, its caption where it has
    none) and ``caption_short_idx``, and with ``variants`` their ``caption_short_variants`` and
    ``caption_short_variant_idx`` (``train.short_caption_fraction``).
    """
    keep_cols = INDEX_COLUMNS + (["caption_short"] if short else [])
    extra = sorted({c[0] for c in where} - set(keep_cols))  # read for the filter only
    columns = keep_cols + extra
    parts = []
    for f in files:
        check_file(f, _table_of(f))
        pf = pq.ParquetFile(f)
        if short and "caption_short" not in pf.schema_arrow.names:
            raise ValueError(
                f"train.short_caption_fraction needs a caption_short column; {f} has none"
            )
        for rg in range(pf.metadata.num_row_groups):
            t = pf.read_row_group(rg, columns=columns)
            n = t.num_rows
            t = t.append_column("file", pa.array([f] * n, pa.string()))
            t = t.append_column("row_group", pa.array([rg] * n, pa.int32()))
            t = t.append_column("row", pa.array(np.arange(n, dtype=np.int32)))
            parts.append(t)
    if not parts:
        raise ValueError("no pairs found in " + ", ".join(files))
    tbl = pa.concat_tables(parts).sort_by([("clip_id", "ascending"), ("file", "ascending")])
    ids = tbl.column("clip_id").to_pylist()
    keep = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    if len(keep) < len(ids):
        log.warning("%d duplicate clip id(s) across inputs kept once", len(ids) - len(keep))
        tbl = tbl.take(keep)
    total = tbl.num_rows
    if where:
        conds = "; ".join(" ".join(map(str, c)) for c in where)
        try:
            tbl = tbl.filter(pq.filters_to_expression([tuple(c) for c in where]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            types = ", ".join(
                f"{n}: {tbl.schema.field(n).type}" for n in sorted({c[0] for c in where})
            )
            raise ValueError(
                f"train.where ({conds}) does not apply to the columns ({types}): {e}"
            ) from e
        if tbl.num_rows == 0:
            raise ValueError(f"train.where ({conds}) keeps none of the {total} pairs")
        log.info("train.where (%s) keeps %d of %d pairs", conds, tbl.num_rows, total)
        tbl = tbl.drop_columns(extra)
    # each caption kind gets KIND_variants (with ``variants``), KIND_idx and KIND_variant_idx
    kinds = CAPTION_KINDS if short else CAPTION_KINDS[:1]
    texts = {k: tbl.column(k).to_pylist() for k in kinds}
    if short:  # a pair without a short caption keeps its dense one
        given = zip(texts["caption_short"], texts["caption"], strict=True)
        texts["caption_short"] = [s or c for s, c in given]
        i = tbl.schema.get_field_index("caption_short")
        tbl = tbl.set_column(i, "caption_short", pa.array(texts["caption_short"]))
    var: dict[str, list[list[str]]] = {}
    if variants:
        for k in kinds:
            var[k] = [[augmented_caption(c, code) for code in CODES] for c in texts[k]]
            tbl = tbl.append_column(f"{k}_variants", pa.array(var[k], pa.list_(pa.string())))
    pos = {c: i for i, c in enumerate(unique_captions(tbl))}
    for k in kinds:
        tbl = tbl.append_column(f"{k}_idx", pa.array([pos[c] for c in texts[k]], pa.int32()))
        if variants:
            idx = [[pos[c] for c in v] for v in var[k]]
            tbl = tbl.append_column(f"{k}_variant_idx", pa.array(idx, pa.list_(pa.int32())))
    return tbl.replace_schema_metadata({"spacetime.pairs_total": str(total)})


def pairs_total(index: pa.Table) -> int:
    """Pairs in the inputs before ``train.where`` (``index.num_rows`` is after it)."""
    meta = index.schema.metadata or {}
    return int(meta.get(b"spacetime.pairs_total", index.num_rows))


def unique_captions(index: pa.Table) -> list[str]:
    """Captions (with the short ones and the augmented variants, where indexed) in
    ``caption_idx`` order."""
    caps: set[str] = set()
    for k in CAPTION_KINDS:
        if k in index.column_names:
            caps.update(index.column(k).to_pylist())
        if f"{k}_variants" in index.column_names:
            caps.update(c for v in index.column(f"{k}_variants").to_pylist() for c in v)
    return sorted(caps)
