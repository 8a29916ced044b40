"""Precompute VAE latents for a pairs table (a Ray Data job), so training never runs the VAE.

``OUT/pairs/*.parquet`` -> ``DEST/*.parquet`` (table ``latents``: every pairs column plus
``latents`` bytes and shape columns, see ``schemas.tables.LATENT_FIELDS``). Each clip is
decoded once (frames ``0, stride, 2*stride, …``, resized to ``width x height``) and
encoded by an actor pool that loads the codec once per actor. A clip that cannot be
decoded or encoded keeps its row with ``latents = null`` and ``latent_error`` naming why.

Read a row back with ``latents_from_row(row) -> np.ndarray (c, t, h, w)``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from train.latents import LatentConfig, build_latent_codec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecomputeConfig:
    """Shape of the encoded clips and resources of the encoding stage."""

    latent: LatentConfig = field(default_factory=lambda: LatentConfig(codec="vae"))
    """The codec to encode with (usually codec='vae' with latent.vae set)."""
    frames: int = 17
    """Pixel frames per clip (Wan VAE: 1 + 4k); shorter clips become error rows."""
    stride: int = 1
    """Take every stride-th frame of the clip."""
    width: int = 256
    """Width the frames are resized to (a multiple of the codec's spatial factor)."""
    height: int = 256
    """Height the frames are resized to."""
    batch_size: int = 4
    """Clips per encoder call."""
    actors: int = 1
    """Encoder actors (each holds one copy of the VAE)."""
    num_cpus: float = 1.0
    """CPUs per actor (fractional is fine)."""
    num_gpus: float = 0.0
    """GPUs per actor (set latent.device='cuda' with it)."""
    latent_dtype: str = "float16"
    """Storage dtype of the latents column (float16 or float32)."""


def latents_from_row(row: dict[str, Any]) -> np.ndarray:
    """The (c, t, h, w) latent array of a ``latents`` table row."""
    if row.get("latents") is None:
        raise ValueError(f"row has no latents: {row.get('latent_error')}")
    shape = (row["latent_c"], row["latent_t"], row["latent_h"], row["latent_w"])
    return np.frombuffer(row["latents"], dtype=np.dtype(row["latent_dtype"])).reshape(shape)


class LatentStage:
    """Ray Data actor: decode clips, encode them with the codec (loaded once), add columns."""

    def __init__(self, cfg: dict[str, Any]):
        from common.config import from_dict

        self.cfg = from_dict(PrecomputeConfig, cfg, where="precompute")
        self.codec = build_latent_codec(self.cfg.latent)
        self.codec.latent_shape(self.cfg.frames, self.cfg.height, self.cfg.width)  # validate early

    def _decode(self, video: bytes) -> np.ndarray:
        from common.video import decode_mp4

        c = self.cfg
        idx = list(range(0, c.frames * c.stride, c.stride))
        frames = decode_mp4(video, indices=idx, size=(c.width, c.height))
        if frames.shape[0] != c.frames:
            raise ValueError(f"decoded {frames.shape[0]} frames, need {c.frames}")
        return frames

    def __call__(self, batch: pa.Table) -> pa.Table:
        c = self.cfg
        n = batch.num_rows
        videos = batch.column("video").to_pylist()
        nframes = batch.column("num_frames").to_pylist()
        out: list[bytes | None] = [None] * n
        errors: list[str | None] = [None] * n
        shape: tuple[int, ...] | None = None
        good, arrays = [], []
        need = (c.frames - 1) * c.stride + 1
        for i in range(n):
            if nframes[i] is not None and nframes[i] < need:
                errors[i] = f"too_short: {nframes[i]} frames, need {need}"
                continue
            try:
                arrays.append(self._decode(videos[i]))
                good.append(i)
            except Exception as e:  # decoders raise many types; the row records it
                errors[i] = f"decode_failed: {type(e).__name__}: {e}"
        if arrays:
            try:
                z = self.codec.encode(np.stack(arrays)).numpy().astype(c.latent_dtype)
                shape = z.shape[1:]
                for j, i in enumerate(good):
                    out[i] = np.ascontiguousarray(z[j]).tobytes()
            except Exception as e:  # one bad batch must not kill the job
                for i in good:
                    errors[i] = f"encode_failed: {type(e).__name__}: {e}"

        def col(value, typ):
            return pa.array([value if out[i] is not None else None for i in range(n)], typ)

        ok_shape = shape or (None, None, None, None)
        cols = {
            "latents": pa.array(out, pa.binary()),
            "latent_dtype": col(c.latent_dtype, pa.string()),
            "latent_c": col(ok_shape[0], pa.int32()),
            "latent_t": col(ok_shape[1], pa.int32()),
            "latent_h": col(ok_shape[2], pa.int32()),
            "latent_w": col(ok_shape[3], pa.int32()),
            "latent_frames": pa.array([c.frames] * n, pa.int32()),
            "latent_stride": pa.array([c.stride] * n, pa.int32()),
            "latent_pixel_height": pa.array([c.height] * n, pa.int32()),
            "latent_pixel_width": pa.array([c.width] * n, pa.int32()),
            "latent_codec": pa.array([self.codec.name] * n, pa.string()),
            "latent_error": pa.array(errors, pa.string()),
        }
        for name, arr in cols.items():
            if name in batch.column_names:
                batch = batch.drop_columns([name])
            batch = batch.append_column(name, arr)
        from schemas.validate import conform

        return conform(batch, "latents")


def precompute_latents(
    pairs_dir: str | Path,
    dest_dir: str | Path,
    cfg: PrecomputeConfig,
    address: str | None = None,
) -> dict[str, int]:
    """Run the job; returns ``{"rows", "encoded", "errors"}``."""
    import ray
    import ray.data

    from common.raylib import free_cpu_check, init_ray

    init_ray(address)
    cfg_dict = dataclasses.asdict(cfg)
    ds = ray.data.read_parquet(str(pairs_dir))
    ds = ds.map_batches(
        LatentStage,
        fn_constructor_kwargs={"cfg": cfg_dict},
        batch_format="pyarrow",
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        num_cpus=cfg.num_cpus,
        num_gpus=cfg.num_gpus or None,
    )
    with free_cpu_check("latents"):
        ds.write_parquet(str(dest_dir))
    import pyarrow.dataset as pads

    tbl = pads.dataset(str(dest_dir), format="parquet").to_table(columns=["latent_error"])
    errors = tbl.column("latent_error").null_count
    counts = {"rows": tbl.num_rows, "encoded": errors, "errors": tbl.num_rows - errors}
    log.info("latents: %s", counts)
    return counts
