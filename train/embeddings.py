"""Caption embeddings for training: each caption embedded once, stored as an Arrow IPC table.

- ``embed_captions(captions, text_cfg, path)`` runs the text encoder as a Ray Data actor stage
  (``CaptionEmbedder``) over the run's unique captions and writes ``path`` (reused when it
  holds exactly these captions from the same text settings); returns the embedding width D.
- ``lookup_text(path, idx)`` gives the padded (B, L, D) embeddings and (B, L) mask of captions
  by index (what ``train.data``'s decode tasks attach to each batch).
- ``token_stats`` / ``token_covariance``: the per-dimension mean and std (and the covariance)
  of the training captions' tokens, for ``model.text_norm`` / ``model.text_whiten``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from train.text import text_key

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- caption embeddings


def write_embeddings(
    path: str | Path,
    captions: Sequence[str],
    embs: Sequence[np.ndarray],
    dim: int,
    name: str,
    key: str = "",
) -> None:
    """Store per-caption (n_i, D) float32 embeddings as an Arrow IPC file (atomically);
    ``key`` names the text settings that made them (``train.text.text_key``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tbl = pa.table(
        {
            "caption": pa.array(list(captions), pa.string()),
            "n": pa.array([e.shape[0] for e in embs], pa.int32()),
            "emb": pa.array([np.ascontiguousarray(e, np.float32).tobytes() for e in embs]),
        },
        metadata={b"dim": str(dim).encode(), b"encoder": name.encode(), b"text": key.encode()},
    )
    tmp = p.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, tbl.schema) as w:
        w.write_table(tbl)
    tmp.replace(p)
    _EMB_CACHE.pop(str(p), None)


_EMB_CACHE: dict[str, tuple[tuple[int, int, int], pa.Table, int]] = {}


def read_embeddings(path: str | Path) -> tuple[pa.Table, int]:
    """The memory-mapped embedding table and its D (cached per process while the file is the
    same: a table rewritten by another process, e.g. the driver of a later run whose Ray
    workers are reused, is read anew)."""
    key = str(path)
    st = os.stat(key)
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    hit = _EMB_CACHE.get(key)
    if hit is None or hit[0] != stamp:
        tbl = pa.ipc.open_file(pa.memory_map(key)).read_all()
        hit = _EMB_CACHE[key] = (stamp, tbl, int(tbl.schema.metadata[b"dim"]))
    return hit[1], hit[2]


def _caption_tokens(tbl: pa.Table, dim: int, i: int) -> np.ndarray:
    """Caption ``i``'s (n, D) float32 token embeddings from the embedding table (no copy)."""
    k = int(tbl.column("n")[int(i)].as_py())
    return np.frombuffer(tbl.column("emb")[int(i)].as_py(), np.float32).reshape(k, dim)


def lookup_text(path: str | Path, caption_idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Padded (B, L, D) float32 embeddings and (B, L) bool mask of the given captions."""
    tbl, dim = read_embeddings(path)
    rows = [_caption_tokens(tbl, dim, i) for i in caption_idx]
    length = max([1] + [r.shape[0] for r in rows])
    text = np.zeros((len(rows), length, dim), np.float32)
    mask = np.zeros((len(rows), length), bool)
    for j, r in enumerate(rows):
        text[j, : r.shape[0]] = r
        mask[j, : r.shape[0]] = True
    return text, mask


def token_stats(
    path: str | Path, caption_idx: Sequence[int], limit: int = 20000
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (D,) of every token of the given captions in the embedding
    table (at most ``limit`` captions, evenly spaced, for large runs); float64 sums, one
    caption at a time."""
    count, total, sq, _ = _token_sums(path, caption_idx, limit, outer=False)
    mean = total / count
    var = np.maximum(sq - count * np.square(mean), 0.0) / (count - 1)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def token_covariance(
    path: str | Path, caption_idx: Sequence[int], limit: int = 20000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``token_stats``' mean and std (D,) and the tokens' covariance (D, D), float64, from
    the same captions in one pass, for ``model.text_whiten``."""
    count, total, sq, outer = _token_sums(path, caption_idx, limit, outer=True)
    mean = total / count
    var = np.maximum(sq - count * np.square(mean), 0.0) / (count - 1)
    cov = (outer - count * np.outer(mean, mean)) / (count - 1)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32), cov


def _token_sums(
    path: str | Path, caption_idx: Sequence[int], limit: int, outer: bool
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray | None]:
    """(token count, sum, sum of squares, sum of outer products if ``outer``) over every token
    of the given captions (at most ``limit``, evenly spaced), in float64."""
    tbl, dim = read_embeddings(path)
    idx = list(caption_idx)
    if len(idx) > limit:
        idx = [idx[int(k)] for k in np.linspace(0, len(idx) - 1, limit)]
    total, sq, count = np.zeros(dim), np.zeros(dim), 0
    prod = np.zeros((dim, dim)) if outer else None
    for i in idx:
        e = _caption_tokens(tbl, dim, i).astype(np.float64)
        total += e.sum(0)
        sq += np.square(e).sum(0)
        if prod is not None:
            prod += e.T @ e
        count += len(e)
    if count < 2:
        raise ValueError(f"text statistics need at least 2 caption tokens, got {count}")
    return count, total, sq, prod


# --------------------------------------------------------------------------- caption stage


class CaptionEmbedder:
    """Ray Data actor stage: loads the text encoder once, embeds batches of captions."""

    def __init__(self, text_cfg: dict[str, Any]):
        from common.config import from_dict
        from train.text import TextConfig, build_text_encoder

        self.encoder = build_text_encoder(from_dict(TextConfig, text_cfg))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        emb, mask = self.encoder.encode([str(c) for c in batch["caption"]])
        rows = [e[m].numpy().astype(np.float32) for e, m in zip(emb, mask, strict=True)]
        return {
            "idx": batch["idx"],
            "n": np.array([r.shape[0] for r in rows], np.int32),
            "emb": np.array([r.tobytes() for r in rows], dtype=object),
            "dim": np.full(len(rows), self.encoder.dim, np.int32),
            "name": np.array([self.encoder.name] * len(rows), dtype=object),
        }


def embed_captions(captions: Sequence[str], text_cfg: Any, path: str | Path) -> int:
    """Embed each caption once (Ray Data actor stage) into the table at ``path``; returns D.

    An existing table holding exactly these captions from the same encoder is reused.
    """
    import dataclasses

    import ray

    p = Path(path)
    captions = list(captions)
    if p.exists():
        try:
            tbl, dim = read_embeddings(p)
            same = tbl.column("caption").to_pylist() == captions
            if same and tbl.schema.metadata.get(b"text", b"").decode() == text_key(text_cfg):
                log.info("reusing %d caption embeddings from %s", len(captions), p)
                return dim
        except (OSError, pa.ArrowInvalid, KeyError) as e:
            log.warning("caption embedding table %s unreadable (%s); recomputing", p, e)
    gpu = 1.0 if str(text_cfg.device).startswith("cuda") else 0.0
    ds = ray.data.from_items([{"idx": i, "caption": c} for i, c in enumerate(captions)])
    out = ds.map_batches(
        CaptionEmbedder,
        fn_constructor_kwargs={"text_cfg": dataclasses.asdict(text_cfg)},
        compute=ray.data.ActorPoolStrategy(size=1),
        batch_size=max(1, int(text_cfg.batch_size)),
        num_cpus=0.5,
        num_gpus=gpu,
    ).take_all()
    out.sort(key=lambda r: int(r["idx"]))
    dim = int(out[0]["dim"])
    embs = [np.frombuffer(r["emb"], np.float32).reshape(int(r["n"]), dim) for r in out]
    write_embeddings(p, captions, embs, dim, text_cfg.encoder, text_key(text_cfg))
    log.info("embedded %d captions with %s (D=%d) into %s", len(captions), out[0]["name"], dim, p)
    return dim
