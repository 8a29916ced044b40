"""All the Ray wiring of ``spacetime recaption``: OUT/clips → OUT/pairs + caption rejects.

One Ray Data job per run::

    read_parquet(OUT/clips) .filter(clip_id not yet captioned or rejected)
    → [map_batches(prepare_batch)            CPU tasks: decode, sample N frames, resize]
    → map_batches(CaptionStage)              actor pool: back end + caption QA
    → [map_batches(AlignmentStage)]          actor pool: open_clip score, min_alignment rule
    → write_parquet(OUT/_recaption/<run>)    staged rows (pairs and rejects, told by _kind)

then the driver streams the staged rows into ``OUT/pairs/part-<run>-NNNNN.parquet`` and
``OUT/rejects/caption-<run>-NNNNN.parquet`` (each written under a hidden temporary name and
renamed, so a killed run never leaves a half shard that counts), deletes the staging, and
records the counts under ``recaption`` in OUT/manifest.json. A rerun reads the clip_ids of
the committed pairs and caption rejects and captions only the others: never twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from common.config import ConfigError, to_dict
from common.lock import out_lock
from curate.finalize import CAPTION_REJECTS
from recaption.base import WeightsMissing
from recaption.config import RecaptionConfig
from recaption.frames import prepare_batch
from recaption.stages import STAGED, AlignmentStage, CaptionStage
from schemas.tables import PAIRS, REJECTS
from schemas.validate import check_files, commit_table, filter_file

log = logging.getLogger(__name__)

STAGING = "_recaption"
REJECT_PREFIX = CAPTION_REJECTS
"""Caption reject shards are OUT/rejects/caption-*.parquet (never collide with curate's)."""


# --- resume state ------------------------------------------------------------------------


def _parquet_files(d: Path, prefix: str = "") -> list[Path]:
    return (
        sorted(p for p in d.glob(f"{prefix}*.parquet") if not p.name.startswith((".", "_")))
        if d.is_dir()
        else []
    )


RETRIED = ("server_error", "model_error")
"""Caption reject reasons a rerun retries: a server or model failure says nothing final about
the clip (a server that was down, a wrong URL, an out-of-memory batch)."""


def _drop_retried_rejects(out: Path) -> int:
    """Remove the ``RETRIED`` rows from OUT's caption reject shards (atomically, shard by
    shard), so their clips are captioned again; returns how many."""
    retried = pa.array(RETRIED)

    def final(tbl: pa.Table) -> pa.ChunkedArray:
        return pc.invert(pc.is_in(tbl.column("reason"), value_set=retried))

    return sum(
        filter_file(f, final, "rejects") for f in _parquet_files(out / "rejects", REJECT_PREFIX)
    )


def done_clip_ids(out: Path) -> set[str]:
    """clip_ids already in OUT/pairs or in a caption reject (the resume key)."""
    done: set[str] = set()
    for f in _parquet_files(out / "pairs"):
        done.update(
            x for x in pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist() if x
        )
    for f in _parquet_files(out / "rejects", REJECT_PREFIX):
        done.update(
            x for x in pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist() if x
        )
    return done


def _clean_partial(out: Path) -> None:
    for d in (out / "pairs", out / "rejects"):
        for stale in d.glob(".*.tmp") if d.is_dir() else []:
            log.info("removing unfinished shard %s", stale)
            stale.unlink(missing_ok=True)


def _recover_staged(out: Path, shard_rows: int) -> int:
    """Commit what a run that died before its commit left in OUT/_recaption: every staged file
    that reads back whole (a file cut short by the crash does not, and its clips stay pending),
    less the clips already done; then remove the staging. Returns the rows recovered."""
    staging = out / STAGING
    if not staging.is_dir():
        return 0
    files = []
    for f in sorted(staging.rglob("*.parquet")):
        try:
            pq.ParquetFile(f).metadata  # noqa: B018 - reads the footer: whole or not
            files.append(f)
        except Exception as e:  # noqa: BLE001 - any unreadable file is left to redo
            log.warning("staged file %s is incomplete (%s): its clips are captioned again", f, e)
    stats = {"captioned": 0, "rejected": 0}
    if files:
        run = "recovered-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        stats = _write_outputs(files, out, run, shard_rows, skip=done_clip_ids(out))
        log.info("recovered %d pair(s) and %d reject(s) staged by an interrupted run",
                 stats["captioned"], stats["rejected"])  # fmt: skip
    shutil.rmtree(staging, ignore_errors=True)
    return stats["captioned"] + stats["rejected"]


# --- output --------------------------------------------------------------------------------


def _write_outputs(
    staged: Path | list[Path], out: Path, run: str, shard_rows: int, skip: set[str] | None = None
) -> dict[str, Any]:
    """Stream the staged rows (a directory's files, or the files given) into committed pairs /
    reject shards, once per clip_id and none of ``skip``; returns the counts written."""
    found = staged.rglob("*.parquet") if isinstance(staged, Path) else staged
    files = sorted(str(f) for f in found)
    pairs_dir, rej_dir = out / "pairs", out / "rejects"
    pairs_dir.mkdir(parents=True, exist_ok=True)
    rej_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set(skip or ())
    stats: dict[str, Any] = {"captioned": 0, "rejected": 0, "tokens": 0, "by_reason": Counter()}
    pending: dict[str, list[pa.Table]] = {"pair": [], "reject": []}
    count = {"pair": 0, "reject": 0}
    shard = {"pair": 0, "reject": 0}

    def flush(kind: str, final: bool) -> None:
        """Write the pending rows of ``kind`` as shards of ``shard_rows`` rows (and, when
        ``final``, the remainder as a last smaller one); a remainder stays pending otherwise."""
        if not pending[kind]:
            return
        rows = pa.concat_tables(pending[kind])
        n = rows.num_rows if final else rows.num_rows - rows.num_rows % shard_rows
        for start in range(0, n, shard_rows):
            write_shard(kind, rows.slice(start, min(shard_rows, n - start)))
        rest = rows.slice(n)
        pending[kind], count[kind] = ([rest] if rest.num_rows else []), rest.num_rows

    def write_shard(kind: str, t: pa.Table) -> None:
        if kind == "pair":
            commit_table(
                t.select(PAIRS.names), pairs_dir / f"part-{run}-{shard[kind]:05d}.parquet", "pairs"
            )
        else:
            name = f"{REJECT_PREFIX}{run}-{shard[kind]:05d}.parquet"
            commit_table(t.select(REJECTS.names), rej_dir / name, "rejects")
        shard[kind] += 1

    def batches() -> Iterator[pa.Table]:
        if files:
            for b in pads.dataset(files, format="parquet", schema=STAGED).to_batches(batch_size=64):
                yield pa.Table.from_batches([b], schema=STAGED)

    for t in batches():
        keep = []
        for cid in t.column("clip_id").to_pylist():
            keep.append(cid not in seen)
            seen.add(cid)
        t = t.filter(pa.array(keep, pa.bool_()))
        for kind in ("pair", "reject"):
            part = t.filter(pc.equal(t.column("_kind"), kind))
            if part.num_rows == 0:
                continue
            stats["tokens"] += int(pc.sum(part.column("_tokens")).as_py() or 0)
            if kind == "pair":
                stats["captioned"] += part.num_rows
            else:
                stats["rejected"] += part.num_rows
                stats["by_reason"].update(part.column("reason").to_pylist())
            pending[kind].append(part)
            count[kind] += part.num_rows
            if count[kind] >= shard_rows:
                flush(kind, final=False)
    flush("pair", final=True)
    flush("reject", final=True)
    stats["by_reason"] = dict(sorted(stats["by_reason"].items()))
    return stats


def totals(out: Path) -> dict[str, Any]:
    """Counts over the whole OUT: clips, pairs, caption rejects (by reason), still pending."""
    clips = sum(pq.ParquetFile(f).metadata.num_rows for f in _parquet_files(out / "clips"))
    pairs = sum(pq.ParquetFile(f).metadata.num_rows for f in _parquet_files(out / "pairs"))
    reasons: Counter[str] = Counter()
    for f in _parquet_files(out / "rejects", REJECT_PREFIX):
        reasons.update(pq.read_table(f, columns=["reason"]).column("reason").to_pylist())
    rejected = sum(reasons.values())
    return {
        "counts": {
            "clips_seen": clips,
            "pairs": pairs,
            "caption_rejected": rejected,
            "pending": max(0, clips - pairs - rejected),
        },  # fmt: skip
        "rejects_by_reason": dict(sorted(reasons.items())),
    }


def update_manifest(out: Path, section: dict[str, Any]) -> dict[str, Any]:
    """Read OUT/manifest.json, set its ``recaption`` key, write it back atomically."""
    import json

    from curate.manifest import write_json_atomic

    path = out / "manifest.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["recaption"] = section
    write_json_atomic(path, data)
    return data


# --- the job ---------------------------------------------------------------------------


def check_config(cfg: RecaptionConfig) -> None:
    """Reject inconsistent settings and missing weights before any work starts."""
    if cfg.min_alignment is not None and not cfg.alignment:
        raise ConfigError("recaption.min_alignment needs recaption.alignment: true")
    if cfg.num_frames < 1 or cfg.batch_size < 1 or cfg.replicas < 1:
        raise ConfigError("recaption: num_frames, batch_size and replicas must be >= 1")
    if cfg.max_retries < 0 or cfg.max_concurrency < 1 or cfg.request_timeout_s <= 0:
        raise ConfigError(
            "recaption: max_retries must be >= 0, max_concurrency >= 1 and request_timeout_s > 0"
            f" (got {cfg.max_retries}, {cfg.max_concurrency}, {cfg.request_timeout_s})"
        )
    from recaption.prompts import get_prompts

    try:
        get_prompts(cfg.prompt_version)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if cfg.backend == "transformers":
        from recaption.backend_transformers import check_weights

        check_weights(cfg.model, cfg.revision, cfg.allow_download)
    elif cfg.backend == "openai" and not cfg.model:
        raise ConfigError("recaption backend 'openai' needs --model (the name the server serves)")
    if cfg.alignment:
        from recaption.alignment import check_weights as check_clip

        check_clip(cfg.alignment_model, cfg.alignment_pretrained, cfg.alignment_checkpoint)


def run_recaption(
    out: str | Path,
    cfg: RecaptionConfig,
    address: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Caption the clips of ``out`` not captioned yet; returns the manifest's recaption section.

    Raises :class:`ConfigError` / :class:`WeightsMissing` / :class:`FileNotFoundError` before
    starting work when the config, the weights or OUT/clips are not usable.
    """
    out = Path(out).resolve()
    clip_files = _parquet_files(out / "clips")
    if not clip_files:
        raise FileNotFoundError(f"{out}/clips holds no Parquet files: run `spacetime curate` first")
    check_files([str(f) for f in clip_files], "clips")
    check_config(cfg)
    with out_lock(out):
        return _recaption_into(out, clip_files, cfg, address, limit)


def _recaption_into(
    out: Path,
    clip_files: list[Path],
    cfg: RecaptionConfig,
    address: str | None,
    limit: int | None,
) -> dict[str, Any]:
    """``run_recaption`` once OUT is locked: recover, retry, caption the rest, commit."""
    _clean_partial(out)
    recovered = _recover_staged(out, cfg.shard_max_rows)
    retried = _drop_retried_rejects(out)
    if retried:
        log.info("retrying %d clip(s) whose caption failed with %s", retried, " or ".join(RETRIED))
    done = done_clip_ids(out)
    run = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    t0 = time.time()
    todo = _pending_ids(clip_files, done)
    log.info("%d clip(s) to caption, %d already captioned or rejected", todo, len(done))
    stats: dict[str, Any] = {"captioned": 0, "rejected": 0, "tokens": 0, "by_reason": {}}
    if todo and cfg.backend == "openai":  # the server answers and serves the model
        from recaption.backend_openai import check_server

        try:
            check_server(cfg)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if todo:
        stats = _run_job(out, clip_files, done, cfg, run, address, limit)
    elapsed = time.time() - t0
    section = {
        "run_id": run,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "backend": cfg.backend,
        "model": cfg.model if cfg.backend != "attributes" else "attributes",
        "prompt_version": cfg.prompt_version,
        "config": to_dict(cfg),
        **totals(out),
        "last_run": {
            "skipped_done": len(done),
            "recovered": recovered,
            **stats,
            "seconds": round(elapsed, 2),
        },  # fmt: skip
    }
    update_manifest(out, section)
    log.info(
        "recaption %s: %d captioned, %d rejected in %.1fs",
        run,
        stats["captioned"],
        stats["rejected"],
        elapsed,
    )
    return section


def _pending_ids(clip_files: list[Path], done: set[str]) -> int:
    """How many clips of OUT/clips are not done (reads only the clip_id column)."""
    n = 0
    for f in clip_files:
        ids = pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist()
        n += sum(1 for x in ids if x not in done)
    return n


def build_dataset(
    clip_files: list[Path],
    done: set[str],
    cfg: RecaptionConfig,
    limit: int | None = None,
) -> Any:
    """The lazy Ray Dataset of staged rows (not executed). Frame preparation is its own CPU
    task stage (its ``memory`` reservation keeps Ray from fusing it into the caption actors)."""
    import ray
    from ray.data.expressions import col

    ds = ray.data.read_parquet([str(f) for f in clip_files])
    if done:
        ds = ds.filter(expr=col("clip_id").not_in(sorted(done)))
    if limit is not None:
        ds = ds.limit(limit)
    api_key = os.environ.get(cfg.api_key_env) if cfg.backend == "openai" else None
    if cfg.backend != "attributes" or cfg.alignment:
        # decoded frames of a batch (+ decoder overhead): a real reservation that also keeps
        # Ray from fusing this CPU stage into the caption actors (different remote args)
        mem = cfg.prep_batch_size * cfg.num_frames * cfg.frame_size**2 * 3 * 2 + (128 << 20)
        ds = ds.map_batches(prepare_batch, fn_kwargs={"num_frames": cfg.num_frames, "longest": cfg.frame_size},
                            batch_size=cfg.prep_batch_size, num_cpus=cfg.prep_num_cpus, memory=mem,
                            batch_format="pyarrow")  # fmt: skip
    ds = ds.map_batches(
        CaptionStage,
        fn_constructor_kwargs={"cfg": cfg, "api_key": api_key, "keep_frames": cfg.alignment},
        compute=ray.data.ActorPoolStrategy(size=cfg.replicas),
        num_gpus=cfg.num_gpus if cfg.backend == "transformers" else 0,
        num_cpus=cfg.actor_num_cpus,
        # openai: a batch is one burst of concurrent requests, so never smaller than the pool
        batch_size=max(cfg.batch_size, cfg.max_concurrency)
        if cfg.backend == "openai"
        else cfg.batch_size,
        batch_format="pyarrow",
    )
    if cfg.alignment:
        ds = ds.map_batches(AlignmentStage, fn_constructor_kwargs={"cfg": cfg},
                            compute=ray.data.ActorPoolStrategy(size=1),
                            num_gpus=cfg.alignment_num_gpus, num_cpus=cfg.actor_num_cpus,
                            batch_size=cfg.batch_size, batch_format="pyarrow")  # fmt: skip
    return ds


def _run_job(
    out: Path,
    clip_files: list[Path],
    done: set[str],
    cfg: RecaptionConfig,
    run: str,
    address: str | None,
    limit: int | None,
) -> dict[str, Any]:
    """Execute the job into OUT/_recaption/<run>, then commit the shards; this run's counts."""
    from common.raylib import free_cpu_check, init_ray

    init_ray(address)
    staged = out / STAGING / run
    with free_cpu_check("recaption"):
        build_dataset(clip_files, done, cfg, limit).write_parquet(str(staged))
    stats = _write_outputs(staged, out, run, cfg.shard_max_rows)
    shutil.rmtree(out / STAGING, ignore_errors=True)
    return stats


__all__ = [
    "run_recaption",
    "build_dataset",
    "check_config",
    "done_clip_ids",
    "totals",
    "WeightsMissing",
]
