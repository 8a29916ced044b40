"""All the Ray wiring of ``spacetime curate``.

Sources are listed and hashed in the driver (small rows: path, size, id). The sources not yet
done are processed in waves, each one Ray Data job::

    from_items(sources) → map_batches(split: probe + scenes + clips + weight-free scores,
    isolated child per worker) → [map_batches(ModelScorer, actor pool, GPUs)]
    → map_batches(filters; in the split task when there is no model stage)
    → write_parquet(OUT/_work/waves/<wave>.tmp) → rename → done

A wave directory is complete once renamed; its ``sources.json`` lists the (source_id, path)
pairs whose every row is inside, so a rerun after a crash (even ``kill -9``) skips them and
deletes half-written ``*.tmp`` waves. ``finalize`` then reads the staged rows, runs the global
dedup (Ray Data), and writes ``OUT/clips``, ``OUT/rejects``, ``OUT/sources`` and
``OUT/manifest.json`` — a clip_id is written at most once, whatever waves hold it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from common.config import ConfigError, to_dict
from common.lock import out_lock
from common.raylib import free_cpu_check
from curate.clips import failed_source
from curate.config import CurateConfig
from curate.finalize import CAPTION_REJECTS
from curate.manifest import write_json_atomic
from curate.sources import (
    Source,
    hash_sources,
    is_uri,
    list_inputs,
    split_duplicates,
)
from curate.stages import (
    STAGED,
    ModelStage,
    filter_batch,
    split_and_filter_batch,
    split_batch,
    to_staged,
)
from schemas.tables import CLIPS, REJECTS, SOURCES
from schemas.validate import write_table

log = logging.getLogger(__name__)

WORK = "_work"
FILTER_NUM_CPUS = 0.25
"""Ray CPUs of the filter stage after a model stage (it only compares columns)."""
_OPERATIONAL = {
    "probe_timeout_s", "split_timeout_s", "split_timeout_per_video_s", "wave_size",
    "split_num_cpus", "max_concurrency", "shard_max_rows", "shard_max_mb", "hash_full_max_mb",
    "dedup",
}  # fmt: skip
"""Config fields a resumed run may change (they do not change the staged rows)."""
_OPERATIONAL_SCORE = {
    "device", "num_gpus", "num_cpus", "num_actors", "batch_size", "allow_download",
}  # fmt: skip
"""``curate.score`` fields a resumed run may change (where and how the model stage runs)."""
MANAGED = ("clips", "rejects", "sources", WORK)
"""Directories of OUT that curate deletes and rewrites: no input may live in them."""


def _model_scorers_enabled(cfg: CurateConfig) -> bool:
    return bool(getattr(cfg.score, "model_scorers_enabled", False))


# --- work directory -----------------------------------------------------------------------


def _resume_key(cfg: CurateConfig) -> dict[str, Any]:
    d = to_dict(cfg)
    key = {k: v for k, v in d.items() if k not in _OPERATIONAL}
    if isinstance(key.get("score"), dict):
        key["score"] = {k: v for k, v in key["score"].items() if k not in _OPERATIONAL_SCORE}
    return key


def _open_work(out: Path, cfg: CurateConfig) -> tuple[Path, str]:
    """Create or resume ``OUT/_work``; returns it and the run id. Refuses a changed config."""
    work = out / WORK
    (work / "waves").mkdir(parents=True, exist_ok=True)
    run_file = work / "run.json"
    key = _resume_key(cfg)
    if run_file.exists():
        run = json.loads(run_file.read_text())
        if run.get("config") != key:
            changed = sorted(k for k in set(key) | set(run.get("config", {}))
                             if key.get(k) != run.get("config", {}).get(k))  # fmt: skip
            raise ConfigError(
                f"{out} holds a curate run made with a different config (changed: {changed}); "
                "use a new --output, or --restart to discard the earlier work"
            )
        return work, run["run_id"]
    run_id = f"curate-{uuid.uuid4().hex[:12]}"
    write_json_atomic(run_file, {"run_id": run_id, "config": key})
    return work, run_id


def _complete_waves(work: Path) -> list[Path]:
    waves = work / "waves"
    for stale in waves.glob("*.tmp"):
        log.info("removing unfinished wave %s", stale.name)
        shutil.rmtree(stale, ignore_errors=True)
    return sorted(p for p in waves.iterdir() if p.is_dir() and (p / "sources.json").exists())


RETRIED = ("decode_timeout", "decoder_crashed", "worker_crashed")
"""Source failures a rerun retries: they depend on the timeouts (which a rerun may raise) or
on a decoder's bad moment, not on the file alone."""


def wave_owners(waves: Sequence[Path]) -> dict[tuple[str, str], Path]:
    """The wave whose rows stand for each (source_id, path): the latest that processed it (a
    source retried by a later wave is that wave's)."""
    owner: dict[tuple[str, str], Path] = {}
    for w in waves:  # in wave order
        for x in json.loads((w / "sources.json").read_text()):
            owner[(x[0], x[1])] = w
    return owner


def _retry_pairs(waves: Sequence[Path], owner: dict[tuple[str, str], Path]) -> set[tuple[str, str]]:
    """Sources whose standing row (in the wave ``owner`` names) is a failure in ``RETRIED``."""
    out: set[tuple[str, str]] = set()
    for w in waves:
        files = sorted(str(f) for f in w.glob("*.parquet"))
        if not files:
            continue
        t = pads.dataset(files, format="parquet", schema=STAGED).to_table(
            columns=["source_id", "source_path", "status", "error"],
            filter=(pc.field("_kind") == "source") & (pc.field("status") == "failed"),
        )
        for r in t.to_pylist():
            pair = (r["source_id"], r["source_path"])
            if owner.get(pair) == w and (r["error"] or "").startswith(RETRIED):
                out.add(pair)
    return out


def _split_write_args(cfg: CurateConfig, models: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray Data arguments of the split stage's ``map_batches`` and of the wave's
    ``write_parquet``.

    The write asks for what the operator before it asks for (the split's CPUs and concurrency,
    or the filter's 0.25 CPU after a model stage), so Ray Data fuses the two: each task writes
    its own rows. As separate tasks the writes needed CPU slots of their own (at 1 CPU a 2-core
    machine ran splits one at a time; at 0.25 they waited for the splits to free one) and
    workers beyond the CPU count, which Ray starts and stops, and a split landing on a new
    worker first starts a new decoder child (stop 31, 2 splits at once on 2 CPUs, 32 tiny
    videos: 9.3-10.6 s unfused, 6.2-6.8 s fused).
    """
    import ray

    # a worker that dies is retried a few times (Ray Data's default is forever: one source
    # that kills its worker every time hung the job); then the wave fails and run_curate
    # isolates the source (worker_crashed)
    split_kw: dict[str, Any] = {"num_cpus": cfg.split_num_cpus, "max_retries": SPLIT_MAX_RETRIES}
    if cfg.max_concurrency > 0:
        split_kw["compute"] = ray.data.TaskPoolStrategy(size=cfg.max_concurrency)
    if models:
        remote = {"num_cpus": FILTER_NUM_CPUS, "max_retries": SPLIT_MAX_RETRIES}
        write_kw: dict[str, Any] = {"ray_remote_args": remote}
    else:
        write_kw = {"ray_remote_args": {"num_cpus": cfg.split_num_cpus,
                                        "max_retries": SPLIT_MAX_RETRIES},
                    "concurrency": cfg.max_concurrency or None}  # fmt: skip
    return split_kw, write_kw


@contextlib.contextmanager
def _task_retries() -> Iterator[None]:
    """Silence Ray 2.60's warning that ``map_batches(**ray_remote_args)`` is deprecated, around
    the calls that set ``max_retries`` (it has no named parameter yet; ``pyproject.toml`` pins
    ``ray<2.64``, where the warning says the keyword arguments go). Users saw the warning on
    every run, about code they cannot change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        yield


def _worker_deaths() -> tuple[type[BaseException], ...]:
    """What Ray raises when a task's worker process died on every try (other errors propagate)."""
    import ray.exceptions as rex

    return tuple(
        getattr(rex, n) for n in ("WorkerCrashedError", "OutOfMemoryError") if hasattr(rex, n)
    )


SPLIT_MAX_RETRIES = 2
"""Retries of a split task whose worker process died (Ray Data retries forever by default)."""


def _crashed_wave(work: Path, index: int, src: Source, error: str) -> Path:
    """A wave holding the failure of one source whose split killed its Ray worker on every
    try: its source row (failed) and a ``worker_crashed`` reject, written as a wave is."""
    import pyarrow.parquet as pq

    tmp = _new_wave_dir(work, index)
    detail = f"the split's Ray worker died on every try ({SPLIT_MAX_RETRIES + 1}): {error}"[:1000]
    src_row = {"source_id": src.source_id, "source_path": src.path, "size_bytes": src.size}
    rows = failed_source(src_row, "clip", "worker_crashed", detail)
    pq.write_table(to_staged(rows), tmp / "crashed.parquet")
    return _commit_wave(tmp, [src])


def _new_wave_dir(work: Path, index: int) -> Path:
    """An empty ``OUT/_work/waves/wNNNNN.tmp`` for wave ``index`` (a leftover one removed)."""
    tmp = work / "waves" / f"w{index:05d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _commit_wave(tmp: Path, sources: Sequence[Source]) -> Path:
    """List the wave's sources in ``sources.json`` and rename ``tmp`` to its final name: the
    wave is durable and complete from here on."""
    pairs = sorted([s.source_id, s.path] for s in sources)
    (tmp / "sources.json").write_text(json.dumps(pairs))
    final = tmp.with_suffix("")
    os.replace(tmp, final)
    return final


def _run_wave(work: Path, index: int, sources: Sequence[Source], cfg: CurateConfig) -> Path:
    import ray

    tmp = _new_wave_dir(work, index)
    items = [
        {"source_id": s.source_id, "source_path": s.path, "size": s.size}
        for s in sorted(sources, key=lambda s: -s.size)
    ]  # fmt: skip - biggest first
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    scratch = str(work / "scratch")
    models = _model_scorers_enabled(cfg)
    split_kw, write_kw = _split_write_args(cfg, models)
    # Without a model stage in between, the filters run in the split task itself: one task per
    # source instead of two (each task costs ~0.2 s of scheduling on a busy 2-core machine).
    split_fn = split_batch if models else split_and_filter_batch
    with _task_retries():
        ds = ds.map_batches(split_fn, fn_kwargs={"cfg": cfg, "scratch": scratch}, batch_size=1,
                            batch_format="pyarrow", **split_kw)  # fmt: skip
    if models:
        sc = cfg.score
        ds = ds.map_batches(
            ModelStage,
            fn_constructor_kwargs={"cfg": sc},
            compute=ray.data.ActorPoolStrategy(size=max(1, int(getattr(sc, "num_actors", 1)))),
            num_gpus=float(getattr(sc, "num_gpus", 0.0)),
            num_cpus=float(getattr(sc, "num_cpus", 1.0)),
            batch_size=int(getattr(sc, "batch_size", 16)),
            batch_format="pyarrow",
        )
        with _task_retries():
            ds = ds.map_batches(filter_batch, fn_kwargs={"cfg": cfg}, batch_format="pyarrow",
                                num_cpus=FILTER_NUM_CPUS, max_retries=SPLIT_MAX_RETRIES)  # fmt: skip
    # Ray Data reserves part of the CPUs for each downstream operator; on a small cluster that
    # leaves the split stage one task at a time (measured: 2 CPUs, 6 x 1 s tasks: 6.2 s with
    # reservation, 3.2 s without). Only this dataset's context is changed.
    ds.context.op_resource_reservation_enabled = False
    with free_cpu_check(f"wave {index}"):
        ds.write_parquet(str(tmp), **write_kw)
    return _commit_wave(tmp, sources)


# --- the job ------------------------------------------------------------------------------


def _refuse_inputs_in_outputs(found: Sequence[tuple[str, int]], out: Path) -> None:
    """ConfigError when a local input lies inside a directory curate rewrites (``OUT/clips``,
    ...): finalizing would delete the footage."""
    managed = [out / name for name in MANAGED]
    for path, _ in found:
        if is_uri(path):
            continue
        p = Path(path)
        for d in managed:
            if p.is_relative_to(d):
                raise ConfigError(
                    f"input {path} lies inside {d}, which curate deletes and rewrites; move "
                    f"the footage out of it or choose another --output"
                )


def run_curate(
    inputs: Sequence[str],
    out: str | Path,
    cfg: CurateConfig,
    address: str | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Curate ``inputs`` into ``out``; returns the manifest. Resumes earlier work in ``out``."""

    if is_uri(str(out)):
        raise ConfigError(
            "--output must be a directory on a file system (on a cluster: one every node "
            f"mounts, e.g. EFS at /mnt/shared), got {out}; object stores lack the atomic "
            "renames resume relies on (see docs/cluster.md)"
        )
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file; give a directory")
    from curate.filters import check_filter_config

    check_filter_config(cfg.filters, cfg.score, cfg.dedup)  # a rule whose scorer is off
    if _model_scorers_enabled(cfg):
        from curate.model_scores import ModelScorer

        ModelScorer.check_weights(cfg.score)  # fails now, with the weights named, not mid-run
    t0 = time.perf_counter()
    found = list_inputs(inputs)  # before anything in OUT is touched: a bad input changes nothing
    _refuse_inputs_in_outputs(found, out)
    log.info("found %d source file(s)", len(found))
    with out_lock(out):
        return _curate_into(out, found, cfg, address, restart, t0)


def _curate_into(
    out: Path,
    found: list[tuple[str, int]],
    cfg: CurateConfig,
    address: str | None,
    restart: bool,
    t0: float,
) -> dict[str, Any]:
    """``run_curate`` once OUT is locked: waves for the sources not done, then finalize."""
    from common.raylib import init_ray
    from curate.finalize import finalize

    if restart:  # curate's own outputs; recaption's (pairs, caption rejects) are pruned later
        for name in MANAGED:
            p = out / name
            if name == "rejects" and p.is_dir():
                for f in p.iterdir():
                    if not f.name.startswith(CAPTION_REJECTS):
                        f.unlink()
            else:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    work, run_id = _open_work(out, cfg)
    sources = hash_sources(found, int(cfg.hash_full_max_mb * (1 << 20)))
    unique, dups = split_duplicates(sources)
    readable = [s for s in unique if not s.error]
    waves = _complete_waves(work)
    owner = wave_owners(waves)
    retry = _retry_pairs(waves, owner)
    done = set(owner) - retry
    todo = [s for s in readable if (s.source_id, s.path) not in done]
    retried = sum(1 for s in todo if (s.source_id, s.path) in retry)
    log.info("%d source(s) to process, %d already done", len(todo), len(readable) - len(todo))
    if retried:
        log.info("retrying %d source(s) whose split timed out or crashed its decoder (%s)",
                 retried, ", ".join(RETRIED))  # fmt: skip
    if todo:
        init_ray(address)
        next_index = 1 + max((int(w.name[1:]) for w in waves), default=-1)
        pending = [todo[k : k + cfg.wave_size] for k in range(0, len(todo), cfg.wave_size)]
        deaths = _worker_deaths()
        while pending:
            chunk = pending.pop(0)
            log.info("wave %d: %d source(s)", next_index, len(chunk))
            try:
                waves.append(_run_wave(work, next_index, chunk, cfg))
            except deaths as e:  # a worker died on every try of some split
                if len(chunk) > 1:  # find the source: each of this wave's sources alone
                    log.warning("wave %d failed (%s); running its %d sources one by one",
                                next_index, type(e).__name__, len(chunk))  # fmt: skip
                    pending = [[s] for s in chunk] + pending
                    continue
                log.error("source %s killed its worker on every try: worker_crashed", chunk[0].path)
                waves.append(_crashed_wave(work, next_index, chunk[0], f"{type(e).__name__}: {e}"))
            next_index += 1
    shutil.rmtree(work / "scratch", ignore_errors=True)
    t1 = time.perf_counter()
    manifest = finalize(out, work, run_id, cfg, sources, unique, dups, waves, address)
    log.info("split %.1fs, finalize %.1fs", t1 - t0, time.perf_counter() - t1)
    return manifest


def staged_dataset(waves: Sequence[Path]) -> pads.Dataset:
    """All staged rows of complete waves as a pyarrow dataset."""
    files = sorted(str(f) for w in waves for f in w.glob("*.parquet"))
    return pads.dataset(files, format="parquet", schema=STAGED)


def staged_clips(files: Sequence[str], source_ids: set[str], cfg: CurateConfig) -> Any:
    """The staged clip rows of ``source_ids`` in ``files``, as the dedup reads them: a lazy
    Ray Dataset of ``ceil(len(files) / dedup.files_per_read_task)`` read tasks."""
    import ray
    from ray.data.expressions import col, lit

    # Few read tasks: the dedup reads a few small columns, and each task costs ~25 ms of
    # scheduling on a 2-core machine (a 1-source run's dedup: 0.14-0.16 s in Ray Data's 4
    # blocks, 0.06 s in 1; 8 sources: 0.15-0.16 s, 0.08 s). The read asks for the dedup's
    # CPUs, so Ray Data fuses it with the banding (ReadParquet->FlatMap: one task, not two).
    blocks = max(1, math.ceil(len(files) / cfg.dedup.files_per_read_task))
    ds = ray.data.read_parquet(list(files), schema=STAGED, num_cpus=cfg.dedup.num_cpus,
                               override_num_blocks=blocks)  # fmt: skip
    ds = ds.filter(expr=col("_kind") == lit("clip"))
    return ds.filter(expr=col("source_id").is_in(sorted(source_ids)))


def dedup_drops(
    waves: Sequence[Path], source_ids: set[str], cfg: CurateConfig, address: str | None = None
) -> dict[str, dict[str, Any]]:
    """Global near-duplicate drops over the staged clips: ``{clip_id: drop}`` computed by
    ``curate.dedup.find_duplicates`` on a Ray Dataset of the staged clip rows."""
    if not getattr(cfg.dedup, "enabled", True):
        return {}
    try:
        from curate.dedup import find_duplicates
    except ImportError as e:
        log.warning("curate.dedup is unavailable (%s): no near-duplicate removal", e)
        return {}

    from common.raylib import init_ray

    files = sorted(str(f) for w in waves for f in w.glob("*.parquet"))
    if not files or not source_ids:
        return {}
    init_ray(address)
    drops = {}
    for d in find_duplicates(staged_clips(files, source_ids, cfg), cfg.dedup):
        if d["clip_id"] != d.get("kept_clip_id"):
            drops.setdefault(d["clip_id"], d)
    log.info("dedup: %d near-duplicate clip(s) dropped", len(drops))
    return drops


def write_shards(
    tables: Sequence[pa.Table] | Any, out_dir: Path, table: str, cfg: CurateConfig
) -> int:
    """Write an iterable of tables as ``part-NNNNN.parquet`` shards bounded in rows and bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = {"clips": CLIPS, "rejects": REJECTS, "sources": SOURCES}[table]
    names = schema.names
    max_bytes = int(cfg.shard_max_mb * (1 << 20))
    pending: list[pa.Table] = []
    rows = size = shard = total = 0

    def flush() -> None:
        nonlocal pending, rows, size, shard
        if not pending:
            return
        t = pa.concat_tables(pending)
        write_table(t.select([n for n in names if n in t.column_names]),
                    str(out_dir / f"part-{shard:05d}.parquet"), table)  # fmt: skip
        shard += 1
        pending, rows, size = [], 0, 0

    for t in tables:
        for start in range(0, t.num_rows, cfg.shard_max_rows):
            piece = t.slice(start, cfg.shard_max_rows)
            if rows and (
                rows + piece.num_rows > cfg.shard_max_rows or size + piece.nbytes > max_bytes
            ):
                flush()
            pending.append(piece)
            rows += piece.num_rows
            size += piece.nbytes
            total += piece.num_rows
    flush()
    if total == 0:  # one empty shard, so readers of the table find its schema
        write_table(schema.empty_table(), str(out_dir / "part-00000.parquet"), table)
    return total
