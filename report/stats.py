"""All the Ray Data wiring of the report: bounded-memory aggregations over Parquet shards.

Every pass reads only the columns it needs (``select_columns`` is pushed into the read, so
the ``video`` bytes are never loaded) and reduces each batch to a few small rows that Ray
Data sums with ``groupby(...).sum(...)`` / ``aggregate(...)``:

* :func:`column_stats` — count, non-null, finite, min, max, sum, sum of squares per column;
* :func:`count_keys` — a batch function returns ``{key: number}``; Ray sums the numbers per
  key (histogram bins with fixed edges, category counts, term counts, n-grams);
* :func:`bottom_k` — a seeded uniform sample per group: each batch keeps its k rows with the
  smallest hash, the driver keeps the k smallest of those (exact bottom-k sampling).

The driver only ever holds aggregated rows (bins, categories, groups), never the table.
"""

from __future__ import annotations

import logging
import posixpath
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SEP = "\x1f"
"""Separator of the parts of a :func:`count_keys` key."""

DERIVED = ("duration_s", "aspect_ratio", "resolution", "caption_words_n")
"""Columns computed from others inside each batch (see :func:`derive`)."""


def key(*parts: Any) -> str:
    """A counter key from parts (joined by :data:`SEP`)."""
    return SEP.join(str(p) for p in parts)


def split_key(k: str) -> list[str]:
    """The parts of a counter key."""
    return k.split(SEP)


# --- files ------------------------------------------------------------------------------


def open_out(out: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of ``out`` (a local path or a URI such as ``s3://…``)."""
    if "://" in str(out):
        return pafs.FileSystem.from_uri(str(out))
    return pafs.LocalFileSystem(), str(out)


def list_parquet(fs: pafs.FileSystem, root: str, table_dir: str) -> list[str]:
    """Committed Parquet files of ``root/table_dir`` (hidden / temporary names skipped)."""
    base = f"{root.rstrip('/')}/{table_dir}"
    info = fs.get_file_info(base)
    if info.type != pafs.FileType.Directory:
        return []
    sel = pafs.FileSelector(base, recursive=True)
    files = []
    for fi in fs.get_file_info(sel):
        name = fi.base_name
        if fi.type != pafs.FileType.File or not name.endswith(".parquet"):
            continue
        # hidden or temporary at any level below the table's folder (as Ray skips them when
        # it reads the folder): .ipynb_checkpoints/, _old/, .part.tmp
        parts = fi.path[len(base) :].strip("/").split("/")
        if any(p.startswith((".", "_")) or ".tmp" in p for p in parts):
            continue
        files.append(fi.path)
    return sorted(files)


def num_rows(fs: pafs.FileSystem, files: Sequence[str]) -> int:
    """Rows in ``files`` from their footers (no data read)."""
    return sum(pq.ParquetFile(f, filesystem=fs).metadata.num_rows for f in files)


def common_schema(fs: pafs.FileSystem, files: Sequence[str]) -> pa.Schema:
    """The columns present in every file (types of the first file)."""
    schemas = [pq.read_schema(f, filesystem=fs) for f in files]
    if not schemas:
        return pa.schema([])
    names = set(schemas[0].names)
    for s in schemas[1:]:
        names &= set(s.names)
    return pa.schema([f for f in schemas[0] if f.name in names])


def read(fs: pafs.FileSystem, files: Sequence[str], columns: Sequence[str], paths: bool = False):
    """A Ray dataset of ``columns`` of ``files`` (``path`` column added when ``paths``)."""
    import ray.data

    # Ray 2.60's threaded file indexer imports fsspec's HTTP filesystem from several threads at
    # once; without aiohttp that races into an ImportError for a *list* of files. Reading their
    # directory (Ray skips hidden "." / "_" entries itself) avoids it. A local filesystem is
    # left for Ray to infer for the same reason.
    target = files[0] if len(files) == 1 else posixpath.commonpath(list(files))
    local = isinstance(fs, pafs.LocalFileSystem)
    ds = ray.data.read_parquet(target, filesystem=None if local else fs, include_paths=paths)
    cols = list(dict.fromkeys([*columns, *(["path"] if paths else [])]))
    return ds.select_columns(cols)


# --- batch helpers ----------------------------------------------------------------------


def derive(tbl: pa.Table) -> pa.Table:
    """Add :data:`DERIVED` columns that the batch's columns allow."""
    names = tbl.column_names
    if "start_s" in names and "end_s" in names and "duration_s" not in names:
        tbl = tbl.append_column("duration_s", pc.subtract(tbl["end_s"], tbl["start_s"]))
    if "width" in names and "height" in names:
        w = pc.cast(tbl["width"], pa.float64())
        h = pc.cast(tbl["height"], pa.float64())
        h_safe = pc.if_else(pc.greater(h, 0), h, pa.scalar(None, pa.float64()))
        if "aspect_ratio" not in names:
            tbl = tbl.append_column("aspect_ratio", pc.divide(w, h_safe))
        if "resolution" not in names:
            res = pc.binary_join_element_wise(
                pc.cast(tbl["width"], pa.string()), pc.cast(tbl["height"], pa.string()), "x"
            )
            tbl = tbl.append_column("resolution", res)
    if "caption" in names and "caption_words_n" not in names:
        from report.captions import word_count

        counted = [None if t is None else word_count(t) for t in tbl["caption"].to_pylist()]
        if "caption_words" in names:
            given = tbl["caption_words"].to_pylist()
            counted = [g if g is not None else c for g, c in zip(given, counted, strict=True)]
        tbl = tbl.append_column("caption_words_n", pa.array(counted, pa.int64()))
    return tbl


def numeric_values(tbl: pa.Table, name: str) -> np.ndarray:
    """Non-null values of a numeric or boolean column as float64."""
    col = pc.drop_null(tbl[name])
    if len(col) == 0:
        return np.zeros(0, np.float64)
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def strings(tbl: pa.Table, name: str, null: str = "(null)") -> list[str]:
    """A column as Python strings, nulls replaced by ``null``."""
    return [null if v is None else str(v) for v in tbl[name].to_pylist()]


def stable_hash(value: Any, seed: int) -> int:
    """A 32-bit hash of ``value`` that is the same in every process and run."""
    return zlib.crc32(f"{seed}:{value}".encode())


# --- Ray passes -------------------------------------------------------------------------


GROUP_PARTITIONS = 1
"""Shuffle partitions of the report's groupbys. What they shuffle is already reduced (one
row per key per batch; Ray aggregates map-side), so one reducer suffices at any scale, while
Ray Data's default (200) spends seconds to minutes starting aggregator actors on small runs
(measured with the hash shuffle: a 100-row groupby-sum 11.7 s at the default, 3.0 s at 4,
0.3 s at 1). The groupbys now run on the sort shuffle (``common.raylib``)."""


def _ray_kwargs(num_cpus: float, batch_size: int) -> dict[str, Any]:
    return {"batch_format": "pyarrow", "batch_size": batch_size, "num_cpus": num_cpus}


def column_stats(
    ds, columns: Sequence[str], num_cpus: float = 0.5, batch_size: int = 4096
) -> dict[str, dict[str, float | None]]:
    """Per column: ``rows``, ``non_null``, ``finite``, ``min``, ``max``, ``mean``, ``std``.

    One pass; each batch yields one row per column, Ray sums and takes min/max per column.
    Columns may include :data:`DERIVED` names.
    """
    from ray.data.aggregate import Max, Min, Sum

    cols = list(columns)

    def per_batch(tbl: pa.Table) -> pa.Table:
        tbl = derive(tbl)
        rows: dict[str, list] = {k: [] for k in ("col", "rows", "nn", "fin", "lo", "hi", "s", "ss")}
        for c in cols:
            if c not in tbl.column_names:
                continue
            v = numeric_values(tbl, c)
            f = v[np.isfinite(v)]
            rows["col"].append(c)
            rows["rows"].append(float(tbl.num_rows))
            rows["nn"].append(float(v.size))
            rows["fin"].append(float(f.size))
            rows["lo"].append(float(f.min()) if f.size else None)
            rows["hi"].append(float(f.max()) if f.size else None)
            rows["s"].append(float(f.sum()))
            rows["ss"].append(float(np.square(f).sum()))
        types = {"col": pa.string()}
        return pa.table({k: pa.array(v, types.get(k, pa.float64())) for k, v in rows.items()})

    parts = ds.map_batches(per_batch, **_ray_kwargs(num_cpus, batch_size))
    agg = parts.groupby("col", num_partitions=GROUP_PARTITIONS).aggregate(
        Sum("rows"), Sum("nn"), Sum("fin"), Min("lo"), Max("hi"), Sum("s"), Sum("ss")
    )
    out: dict[str, dict[str, float | None]] = {}
    for r in agg.iter_rows():
        fin = r["sum(fin)"] or 0.0
        mean = r["sum(s)"] / fin if fin else None
        var = max(0.0, r["sum(ss)"] / fin - mean * mean) if fin else None
        out[r["col"]] = {
            "rows": int(r["sum(rows)"]),
            "non_null": int(r["sum(nn)"]),
            "finite": int(fin),
            "min": r["min(lo)"],
            "max": r["max(hi)"],
            "mean": mean,
            "std": float(np.sqrt(var)) if var is not None else None,
        }
    return out


def count_keys(
    ds, fn: Callable[[pa.Table], dict[str, float]], num_cpus: float = 0.5, batch_size: int = 4096
) -> dict[str, float]:
    """Sum ``fn(batch)`` (a ``{key: number}`` dict per batch) over the dataset, per key.

    The per-batch dicts become ``(key, n)`` rows and Ray Data sums them with
    ``groupby("key").sum("n")``; the driver receives one row per distinct key.
    """

    def per_batch(tbl: pa.Table) -> pa.Table:
        c = fn(derive(tbl))
        return pa.table(
            {
                "key": pa.array(list(c.keys()), pa.string()),
                "n": pa.array(list(c.values()), pa.float64()),
            }
        )

    parts = ds.map_batches(per_batch, **_ray_kwargs(num_cpus, batch_size))
    return {
        r["key"]: r["sum(n)"]
        for r in parts.groupby("key", num_partitions=GROUP_PARTITIONS).sum("n").iter_rows()
    }


def edges_for(lo: float | None, hi: float | None, bins: int, integer: bool = False) -> list[float]:
    """Fixed bin edges over [lo, hi] (one unit-wide bin when the column is constant)."""
    if lo is None or hi is None:
        return []
    if hi <= lo:
        return [lo - 0.5, hi + 0.5]
    if integer and hi - lo + 1 <= bins:
        return [float(x) for x in np.arange(lo - 0.5, hi + 1.0, 1.0)]
    return [float(x) for x in np.linspace(lo, hi, bins + 1)]


def histogram_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of finite ``values`` per bin of ``edges`` (last bin closed, like numpy)."""
    v = values[np.isfinite(values)]
    counts, _ = np.histogram(v, bins=np.asarray(edges, dtype=np.float64))
    return counts


def hist_keys(tbl: pa.Table, edges: dict[str, list[float]], prefix: str = "h") -> dict[str, float]:
    """Counter keys ``(prefix, column, bin)`` for the histograms of a batch."""
    out: dict[str, float] = {}
    for c, e in edges.items():
        if c not in tbl.column_names or not e:
            continue
        counts = histogram_counts(numeric_values(tbl, c), e)
        for i in np.nonzero(counts)[0]:
            out[key(prefix, c, int(i))] = float(counts[i])
    return out


def value_count_keys(tbl: pa.Table, columns: Iterable[str], prefix: str = "v") -> dict[str, float]:
    """Counter keys ``(prefix, column, value)`` of categorical columns (lists: every item)."""
    out: dict[str, float] = {}
    for c in columns:
        if c not in tbl.column_names:
            continue
        col = tbl[c]
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            values = [str(x) for lst in col.to_pylist() if lst for x in lst]
        elif pa.types.is_floating(col.type):
            values = ["(null)" if x is None else f"{x:g}" for x in col.to_pylist()]
        else:
            values = strings(tbl, c)
        for v in values:
            k = key(prefix, c, v)
            out[k] = out.get(k, 0.0) + 1.0
    return out


def assemble_histograms(
    counts: dict[str, float],
    edges: dict[str, list[float]],
    stats: dict[str, dict],
    prefix: str = "h",
) -> dict[str, dict[str, Any]]:
    """``{column: {edges, counts, total, non_null, min, max, mean, std}}`` from counter keys."""
    out: dict[str, dict[str, Any]] = {}
    for c, e in edges.items():
        bins = [0] * max(0, len(e) - 1)
        for i in range(len(bins)):
            bins[i] = int(counts.get(key(prefix, c, i), 0))
        st = stats.get(c, {})
        out[c] = {
            "edges": e,
            "counts": bins,
            "total": sum(bins),
            "non_null": st.get("non_null", 0),
            "nonfinite": st.get("non_null", 0) - st.get("finite", 0),
            **{k: st.get(k) for k in ("min", "max", "mean", "std")},
        }
    return out


def assemble_values(counts: dict[str, float], prefix: str = "v") -> dict[str, dict[str, int]]:
    """``{column: {value: count}}`` (most frequent first) from counter keys."""
    out: dict[str, dict[str, int]] = {}
    for k, n in counts.items():
        parts = split_key(k)
        if len(parts) == 3 and parts[0] == prefix:
            out.setdefault(parts[1], {})[parts[2]] = int(n)
    return {c: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for c, v in out.items()}


def bottom_k(
    ds,
    k: int,
    id_columns: Sequence[str],
    group_columns: Sequence[str] = (),
    seed: int = 0,
    num_cpus: float = 0.5,
    batch_size: int = 4096,
) -> list[dict[str, Any]]:
    """A seeded uniform sample of ``k`` rows per group (all rows of a smaller group).

    Each batch keeps its ``k`` rows of smallest :func:`stable_hash` per group; the driver keeps
    the ``k`` smallest of those, which is exactly the global bottom-k, whatever the batching.
    Output is bounded by k x groups x batches rows.
    """
    groups, ids = list(group_columns), list(id_columns)

    def pick(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by: dict[tuple, list[dict[str, Any]]] = {}
        for r in rows:
            by.setdefault(tuple(r.get(g) for g in groups), []).append(r)
        kept = []
        for g in sorted(by, key=lambda t: tuple("" if x is None else str(x) for x in t)):
            kept.extend(sorted(by[g], key=lambda r: (r["_h"], *(str(r.get(i)) for i in ids)))[:k])
        return kept

    def per_batch(tbl: pa.Table) -> pa.Table:
        cols = [tbl[i].to_pylist() for i in ids if i in tbl.column_names]
        h = pa.array([stable_hash(t, seed) for t in zip(*cols, strict=True)], pa.int64())
        tbl = tbl.append_column("_h", h)
        rows = pick(tbl.to_pylist())
        return pa.Table.from_pylist(rows, schema=tbl.schema)

    if k <= 0:
        return []
    parts = ds.map_batches(per_batch, **_ray_kwargs(num_cpus, batch_size))
    rows = pick(parts.take_all())
    for r in rows:
        r.pop("_h", None)
    return rows


def locate(ds, ids: Iterable[str]) -> dict[str, str]:
    """``{clip_id: file}`` for a bounded set of ids (``ds`` read with ``paths=True``)."""
    from ray.data.expressions import col

    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    rows = ds.filter(expr=col("clip_id").is_in(wanted)).select_columns(["clip_id", "path"])
    return {r["clip_id"]: r["path"] for r in rows.take_all()}


def fetch_videos(
    fs: pafs.FileSystem, where: dict[str, str], column: str = "video"
) -> dict[str, bytes]:
    """``{clip_id: bytes}`` for ``{clip_id: file}``: one filtered read per file, bounded."""
    by_file: dict[str, list[str]] = {}
    for cid, f in where.items():
        by_file.setdefault(f, []).append(cid)
    out: dict[str, bytes] = {}
    for f, ids in sorted(by_file.items()):
        try:
            t = pq.read_table(
                f, filesystem=fs, columns=["clip_id", column], filters=[("clip_id", "in", ids)]
            )
        except (OSError, pa.ArrowInvalid, KeyError) as e:
            log.warning("gallery: cannot read %s from %s: %s", column, f, e)
            continue
        for cid, data in zip(t["clip_id"].to_pylist(), t[column].to_pylist(), strict=True):
            if data is not None:
                out[cid] = data
    return out
