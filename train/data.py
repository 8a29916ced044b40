"""Training data from pair shards: index, deterministic bucketed plan, Ray Data decode, per-rank shards.

How a batch is made:

1. ``train.index``: ``pair_files(inputs)`` lists the pair shards of every input; ``scan_pairs``
   reads their light columns into an index sorted by ``clip_id`` (where each pair lives, its
   captions and their rows in the caption-embedding table).
2. ``epoch_batches`` is the plan of one epoch, a pure function of (index, config, seed, epoch):
   each clip becomes a video row (``num_frames`` at ``frame_stride``, random start) or, with
   probability ``image_fraction`` (or when too short), a single-frame row; it is assigned the
   bucket size whose aspect ratio is nearest its own (a bucket too small to fill one batch joins
   the fillable bucket of the nearest aspect ratio with its frame count, or the fullest where
   none fills one, so no clip is left out every epoch); rows are shuffled within each bucket
   shape (T, H, W) and cut into global batches of ``batch_size * workers`` (the remainder of a
   bucket waits for the next epoch's shuffle); the batch order is shuffled. Every batch has one
   shape. ``plan_rows`` lays the epochs end to end and splits each global batch into one row
   per rank, numbered by micro-batch ``mb``.
3. Ray Data runs the plan: ``ray.data.from_items(plan rows)`` -> per rank ``filter(rank == r)``
   -> ``map(load_local_batch)`` on CPU tasks, which reads each clip's ``video`` bytes from its
   Parquet row group, decodes the planned frames (``common.video.decode_mp4``), resizes to
   cover and centre-crops to the bucket, looks up the caption embeddings, and emits one row per
   local batch: ``video`` (B, T, H, W, 3) uint8, ``text`` (B, L, D) float32, ``mask`` (B, L),
   ``mb``, ``epoch``, ``hash`` (content hash of the batch) and ``errors``.
   ``RankDataConfig`` (a ``ray.train.DataConfig``) hands rank r its own ordered pipeline, so
   ``ray.train.get_dataset_shard("train")`` yields exactly the planned batches in order
   (``preserve_order``), every rank the same number. No ``local_shuffle_buffer_size``.

Resume: the data position is the micro-batch number. The driver starts the plan at the
checkpoint's position; after a worker restart inside one run the loop skips rows with
``mb`` below its checkpoint. Either way a resumed run sees the same batches as an
uninterrupted one.

A clip that cannot be read or decoded is replaced in its batch by a copy of a clip that could
(so shapes and step counts stay equal across ranks) and named in the row's ``errors``; the
loop logs it to ``RUN/batches/``. A batch with no readable clip raises.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.train import DataConfig

from train.augment import MIRROR, REVERSE, augment_frames
from train.config import TrainConfig
from train.embeddings import lookup_text
from train.index import CAPTION_KINDS

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PlannedBatch:
    """One global micro-batch: a bucket shape and, per sample, the clip and its frames."""

    shape: tuple[int, int, int]
    """(T, H, W) of every sample."""
    rows: tuple[int, ...]
    """Index rows (positions in the scanned index), ``batch_size * workers`` of them."""
    frames: tuple[tuple[int, ...], ...]
    """Source frame indices of each sample (length T)."""
    augment: tuple[int, ...]
    """Augmentation code of each sample (``train.augment``: 0 none, bits MIRROR, REVERSE)."""
    short: tuple[bool, ...]
    """Whether each sample trains on its short caption (``train.short_caption_fraction``)."""


def nearest_bucket(width: int, height: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The (height, width) in ``sizes`` whose log aspect ratio is closest to width/height."""
    ar = math.log(max(width, 1) / max(height, 1))
    return min(sizes, key=lambda hw: (abs(math.log(hw[1] / hw[0]) - ar), hw))


def frame_indices(n: int, num_frames: int, stride: int, u: float) -> list[int] | None:
    """``num_frames`` indices at ``stride`` (smaller for short clips) starting at a point chosen
    by ``u`` in [0, 1); None when the clip has fewer than ``num_frames`` frames."""
    if num_frames == 1:
        return [min(int(u * n), n - 1)]
    if n < num_frames:
        return None
    s = max(1, min(stride, (n - 1) // (num_frames - 1)))
    span = (num_frames - 1) * s + 1
    start = min(int(u * (n - span + 1)), n - span)
    return [start + s * k for k in range(num_frames)]


def epoch_batches(
    index: pa.Table, cfg: TrainConfig, epoch: int, workers: int
) -> tuple[list[PlannedBatch], dict[str, int]]:
    """The shuffled, bucketed global micro-batches of ``epoch`` and row counts by kind."""
    rng = np.random.default_rng([cfg.seed, epoch, 7])
    nf = index.column("num_frames").to_numpy()
    ws = index.column("width").to_numpy()
    hs = index.column("height").to_numpy()
    n = len(nf)
    u_mode, u_start = rng.random(n), rng.random(n)
    sizes = cfg.bucket_sizes()
    # augmentation draws on their own stream, so runs without augmentation keep their plans
    aug_rng = np.random.default_rng([cfg.seed, epoch, 11])
    u_mirror, u_reverse = aug_rng.random(n), aug_rng.random(n)
    u_short = np.random.default_rng([cfg.seed, epoch, 13]).random(n)
    groups: dict[tuple[int, int, int], list[tuple[int, tuple[int, ...], int, bool]]] = {}
    counts = {"video": 0, "image": 0, "too_short_as_image": 0}
    patch_t = cfg.model.patch_t or 1
    for i in range(n):
        h, w = nearest_bucket(int(ws[i]), int(hs[i]), sizes)
        t = 1 if (cfg.num_frames == 1 or u_mode[i] < cfg.image_fraction) else cfg.num_frames
        idx = frame_indices(int(nf[i]), t, cfg.frame_stride, float(u_start[i]))
        if idx is None and patch_t > 1:  # no single-frame sample: it has no patch_t frames
            counts["too_short_skipped"] = counts.get("too_short_skipped", 0) + 1
            continue
        if idx is None:
            t, idx = 1, frame_indices(int(nf[i]), 1, 1, float(u_start[i]))
            counts["too_short_as_image"] += 1
        counts["video" if t > 1 else "image"] += 1
        code = MIRROR * bool(u_mirror[i] < cfg.mirror_fraction)
        code |= REVERSE * bool(t > 1 and u_reverse[i] < cfg.reverse_fraction)
        short = bool(u_short[i] < cfg.short_caption_fraction)
        groups.setdefault((t, h, w), []).append((i, tuple(idx), code, short))
    per = cfg.batch_size * workers
    merged = 0
    for t in sorted({s[0] for s in groups}):
        same = sorted(s for s in groups if s[0] == t)
        small = [s for s in same if len(groups[s]) < per]
        fillable = [s for s in same if len(groups[s]) >= per]
        for s in small:
            # a bucket that cannot fill one batch would never be drawn: its rows join the
            # fillable bucket of the nearest aspect ratio (cover-resize and crop to its size),
            # or, where none of this frame count fills one, the fullest bucket
            if fillable:
                aspect = math.log(s[2] / s[1])
                host = min(fillable, key=lambda b: (abs(math.log(b[2] / b[1]) - aspect), b))
            else:
                host = max(same, key=lambda b: (len(groups.get(b, ())), b))
                if host == s:
                    continue
            groups[host] = groups[host] + groups.pop(s)
            merged += 1
    if merged:
        counts["merged_buckets"] = merged
    batches: list[PlannedBatch] = []
    for shape in sorted(groups):
        members = groups[shape]
        order = rng.permutation(len(members))
        for k in range(0, len(members) - per + 1, per):
            chosen = [members[j] for j in order[k : k + per]]
            batches.append(
                PlannedBatch(
                    shape,
                    tuple(c[0] for c in chosen),
                    tuple(c[1] for c in chosen),
                    tuple(c[2] for c in chosen),
                    tuple(c[3] for c in chosen),
                )
            )
    counts["left_for_next_epoch"] = n - counts.get("too_short_skipped", 0) - len(batches) * per
    perm = rng.permutation(len(batches))
    return [batches[j] for j in perm], counts


_MAX_EMPTY_EPOCHS = 20
"""Epochs in a row without a batch after which planning gives up."""


def plan_rows(
    index: pa.Table, cfg: TrainConfig, workers: int, start_mb: int, end_mb: int
) -> Iterator[dict[str, Any]]:
    """Plan rows for micro-batches ``start_mb <= mb < end_mb``: one row per (mb, rank).

    Each row: ``mb``, ``epoch``, ``rank``, ``t``, ``h``, ``w``, ``clip_ids``, ``files``,
    ``row_groups``, ``rows``, ``frames`` (B*T flattened), ``caption_idx`` (of each sample's
    caption as augmented, short or dense), ``augment`` (codes), ``short`` (flags).
    """
    has_variants = "caption_variant_idx" in index.column_names
    if cfg.augments and not has_variants:
        raise ValueError("augmentation needs an index scanned with scan_pairs(..., variants=True)")
    kinds = [k for k in CAPTION_KINDS if f"{k}_idx" in index.column_names]
    if cfg.short_caption_fraction and len(kinds) < 2:
        raise ValueError("short captions need an index scanned with scan_pairs(..., short=True)")
    files = index.column("file").to_pylist()
    rgs = index.column("row_group").to_pylist()
    rws = index.column("row").to_pylist()
    ids = index.column("clip_id").to_pylist()
    # caption index of each row by kind (short or not): per augmentation code with variants
    col = "{}_variant_idx" if has_variants else "{}_idx"
    cap_of = {k == "caption_short": index.column(col.format(k)).to_pylist() for k in kinds}
    mb, epoch, bs, empty = 0, 0, cfg.batch_size, 0
    while mb < end_mb:
        batches, counts = epoch_batches(index, cfg, epoch, workers)
        if epoch == 0:
            log.info("plan of epoch 0: %d batches, rows %s", len(batches), counts)
        if not batches:  # this epoch's draw of images and videos fills no batch; the next may
            empty += 1
            if empty >= _MAX_EMPTY_EPOCHS:
                raise ValueError(
                    f"no batch can be formed: {index.num_rows} clips, but each bucket shape "
                    f"needs batch_size * workers = {bs * workers} clips (counts {counts}, "
                    f"{empty} epochs in a row); lower train.batch_size, use fewer buckets or "
                    "add data"
                )
            epoch += 1
            continue
        empty = 0
        if mb + len(batches) <= start_mb:
            mb += len(batches)
            epoch += 1
            continue
        for b in batches:
            if start_mb <= mb < end_mb:
                for r in range(workers):
                    sel = b.rows[r * bs : (r + 1) * bs]
                    codes = list(b.augment[r * bs : (r + 1) * bs])
                    short = list(b.short[r * bs : (r + 1) * bs])
                    yield {
                        "mb": mb,
                        "epoch": epoch,
                        "rank": r,
                        "t": b.shape[0],
                        "h": b.shape[1],
                        "w": b.shape[2],
                        "clip_ids": [ids[i] for i in sel],
                        "files": [files[i] for i in sel],
                        "row_groups": [rgs[i] for i in sel],
                        "rows": [rws[i] for i in sel],
                        "frames": [f for fr in b.frames[r * bs : (r + 1) * bs] for f in fr],
                        "caption_idx": [
                            cap_of[s][i][a] if has_variants else cap_of[s][i]
                            for i, a, s in zip(sel, codes, short, strict=True)
                        ],
                        "augment": codes,
                        "short": short,
                    }
            mb += 1
        epoch += 1


def batches_per_epoch(index: pa.Table, cfg: TrainConfig, workers: int, epoch: int = 0) -> int:
    """Number of global micro-batches in ``epoch``."""
    return len(epoch_batches(index, cfg, epoch, workers)[0])


# --------------------------------------------------------------------------- decode stage


def resize_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (T, h, w, 3) to cover (height, width) keeping aspect, then centre-crop."""
    import cv2

    _, h, w, _ = frames.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], height, width, 3), np.uint8)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    for k, f in enumerate(frames):
        r = cv2.resize(f, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else f
        out[k] = r[y0 : y0 + height, x0 : x0 + width]
    return out


def _read_videos(files, row_groups, rows) -> list[bytes | None]:
    """Video bytes of each (file, row group, row); each row group read once."""
    out: list[bytes | None] = [None] * len(files)
    need: dict[tuple[str, int], list[int]] = {}
    for j, key in enumerate(zip(files, row_groups, strict=True)):
        need.setdefault(key, []).append(j)
    for (f, rg), js in need.items():
        col = pq.ParquetFile(f).read_row_group(int(rg), columns=["video"]).column("video")
        for j in js:
            out[j] = col[int(rows[j])].as_py()
    return out


def load_local_batch(row: dict[str, Any], embeddings: str) -> dict[str, Any]:
    """Ray Data ``map`` stage: one plan row -> one decoded local batch (see module docstring)."""
    t, h, w = int(row["t"]), int(row["h"]), int(row["w"])
    ids = [str(c) for c in row["clip_ids"]]
    frames = np.asarray(row["frames"], np.int64).reshape(len(ids), t)
    codes = [int(a) for a in row["augment"]]
    errors: list[dict[str, str]] = []
    clips: list[np.ndarray | None] = [None] * len(ids)
    try:
        videos = _read_videos(list(row["files"]), list(row["row_groups"]), list(row["rows"]))
    except Exception as e:  # unreadable shard: every clip of the batch fails with the reason
        videos = [None] * len(ids)
        errors.extend({"clip_id": c, "reason": "read_failed", "detail": str(e)} for c in ids)
    for j, data in enumerate(videos):
        if data is None:
            continue
        try:
            clip = _decode(data, frames[j])
            clips[j] = augment_frames(resize_crop(clip, h, w), codes[j])
        except Exception as e:  # decoder errors come in many types; each becomes a named reason
            errors.append({"clip_id": ids[j], "reason": "decode_failed", "detail": str(e)[:300]})
    ok = [j for j, c in enumerate(clips) if c is not None]
    if not ok:
        raise RuntimeError(f"micro-batch {row['mb']}: no clip could be decoded: {errors}")
    cap_idx = [int(c) for c in row["caption_idx"]]
    for j in range(len(clips)):
        if clips[j] is None:  # the copy trains with its own caption, not the failed clip's
            k = ok[j % len(ok)]
            clips[j], ids[j], cap_idx[j] = clips[k], ids[k], cap_idx[k]
    video = np.stack(clips)  # (B, T, H, W, 3)
    text, mask = lookup_text(embeddings, cap_idx)
    digest = hashlib.sha1(video.tobytes())
    digest.update("|".join(ids).encode())
    digest.update(text.tobytes())
    return {
        "mb": int(row["mb"]),
        "epoch": int(row["epoch"]),
        "rank": int(row["rank"]),
        "video": video,
        "text": text,
        "mask": mask,
        "clip_ids": "|".join(ids),
        "hash": digest.hexdigest()[:16],
        "errors": json.dumps(errors),
    }


def _decode(data: bytes, idx: np.ndarray) -> np.ndarray:
    """Planned frames; indices past a stream shorter than its metadata are clamped."""
    from common.video import decode_mp4

    try:
        return decode_mp4(data, indices=idx)
    except IndexError:
        allf = decode_mp4(data)
        return allf[np.minimum(idx, len(allf) - 1)]


def build_rank_dataset(plan: Any, rank: int, embeddings: str, loader_cpus: float) -> Any:
    """Rank ``rank``'s ordered pipeline over a plan dataset: filter, then decode on CPU tasks."""
    from ray.data.expressions import col, lit

    ds = plan.filter(expr=col("rank") == lit(rank)).map(
        load_local_batch, fn_kwargs={"embeddings": embeddings}, num_cpus=loader_cpus
    )
    ds.context.execution_options.preserve_order = True
    return ds


PLAN_ROWS_PER_BLOCK = 16
"""Plan rows (micro-batches) per block, so per loader task: enough blocks for decoding to run
in parallel, few enough that Ray's per-task cost stays small (500 demo training steps on 2
cores: 3.7-3.8 min, against 4.1-4.7 min with one row per block; benchmarks/RESULTS.md)."""


def make_plan_dataset(rows: list[dict[str, Any]]) -> Any:
    """The plan as a Ray Dataset (blocks of ``PLAN_ROWS_PER_BLOCK`` rows, at most 2048)."""
    import ray

    blocks = -(-len(rows) // PLAN_ROWS_PER_BLOCK)  # ceil
    return ray.data.from_items(rows, override_num_blocks=max(1, min(blocks, 2048)))


class RankDataConfig(DataConfig):
    """A ``ray.train.DataConfig`` giving rank r ``build_rank_dataset(plan, r)``: each rank its
    own ordered pipeline of the plan, deterministic and with equal step counts."""

    def __init__(self, embeddings: str, loader_cpus: float):
        super().__init__(datasets_to_split=[])
        self.embeddings = str(embeddings)
        self.loader_cpus = float(loader_cpus)

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        """Per-rank iterators (called once per worker group by Ray Train)."""
        out: list[dict[str, Any]] = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            for r in range(world_size):
                rank_ds = build_rank_dataset(ds, r, self.embeddings, self.loader_cpus)
                out[r][name] = rank_ds.iterator()
        return out


def unpack_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A one-row numpy batch from ``iter_batches(batch_size=1)`` as plain values."""

    def first(v):
        x = v[0]
        return np.asarray(x) if isinstance(x, np.ndarray) else x

    out = {k: first(v) for k, v in batch.items()}
    for k in ("mb", "epoch", "rank"):
        out[k] = int(out[k])
    for k in ("clip_ids", "hash", "errors"):
        out[k] = str(out[k])
    return out
