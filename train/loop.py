"""The Ray Train driver: ``train(inputs, run_dir, cfg)`` runs ``train.worker``'s
``train_loop_per_worker`` on each rank (``TorchTrainer``, Ray Train V2).

It writes ``RUN/train_config.json``, indexes the pair shards, embeds every caption and sample
prompt once (``train.embeddings.embed_captions``), reads the data position of the latest
checkpoint under ``RUN`` and plans the batches from there, then runs ``TorchTrainer`` with
``RunConfig(name=RUN.name, storage_path=RUN.parent)`` so checkpoints land in ``RUN/``.
Rerunning the same command resumes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from common.config import to_dict
from train.augment import MIRROR, REVERSE
from train.checkpoint import latest_checkpoint
from train.config import TrainConfig
from train.data import RankDataConfig, make_plan_dataset, plan_rows
from train.embeddings import embed_captions, token_covariance, token_stats
from train.index import pair_files, pairs_total, scan_pairs, unique_captions
from train.text import check_text_encoder
from train.worker import train_loop_per_worker

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- driver


def data_position(run_dir: str | Path) -> tuple[int, int, Path | None]:
    """(step, micro-batch) of the checkpoint a rerun resumes from, and its dir; zeros if none."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return 0, 0, None
    state = json.loads((ckpt / "state.json").read_text())
    pos = state.get("data_position") or {}
    return int(state.get("step", 0)), int(pos.get("mb", 0)), ckpt


PLAN_FIELDS = (
    "seed", "batch_size", "workers", "grad_accum", "num_frames", "frame_stride", "buckets",
    "image_fraction", "mirror_fraction", "reverse_fraction", "short_caption_fraction", "where",
)  # fmt: skip
"""Train settings the data plan depends on: a resume continues the plan at the checkpoint's
micro-batch, so these must be those of the run that wrote it."""


def _check_resume_plan(run: Path, cfg: TrainConfig, inputs: list[str], mb0: int) -> None:
    """ConfigError when a setting of ``PLAN_FIELDS`` differs from the run's recorded config
    (``train_config.json``): the resumed plan would skip or repeat clips. Changed inputs only
    warn: adding data to a run redraws its plan on purpose."""
    from common.config import ConfigError

    try:
        old = json.loads((run / "train_config.json").read_text())
    except (OSError, ValueError):
        return  # nothing recorded to compare with
    before, now = old.get("train") or {}, json.loads(json.dumps(to_dict(cfg)))
    changed = [f for f in PLAN_FIELDS if f in before and before[f] != now.get(f)]
    if changed:
        was = ", ".join(f"{f}={before[f]!r}" for f in changed)
        new = ", ".join(f"{f}={now.get(f)!r}" for f in changed)
        raise ConfigError(
            f"{run} resumes at micro-batch {mb0} of a data plan made with {was}; this run asks "
            f"for {new}, and would skip or repeat clips. Rerun with the run's values, or train "
            "into a new --run"
        )
    if sorted(old.get("inputs") or []) != sorted(str(i) for i in inputs):
        log.warning(
            "the inputs differ from those of the checkpointed run (%s): the data plan is drawn "
            "anew from the new index, from micro-batch %d on",
            old.get("inputs"),
            mb0,
        )


def train(
    inputs: list[str],
    run_dir: str | Path,
    cfg: TrainConfig,
    address: str | None = None,
    crash_at: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir`` on the pairs of ``inputs``; returns a summary.

    ``crash_at={"rank", "step", "marker"}`` is a test hook: that rank exits once at that step.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from common.raylib import init_ray

    cfg = cfg.resolved()
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    files = pair_files(inputs)
    step0, mb0, ckpt = data_position(run)
    if ckpt is not None:
        _check_resume_plan(run, cfg, inputs, mb0)
    check_text_encoder(cfg.text)  # a missing encoder stops the run here, not in an actor
    (run / "train_config.json").write_text(
        json.dumps({"inputs": [str(i) for i in inputs], "train": to_dict(cfg)}, indent=1)
    )
    init_ray(address)
    index = scan_pairs(
        files, cfg.where, variants=cfg.augments, short=bool(cfg.short_caption_fraction)
    )
    captions = unique_captions(index)
    prompts = list(cfg.sample_prompts)
    text_cfg = cfg.text
    if text_cfg.cache_dir is None:
        import dataclasses

        text_cfg = dataclasses.replace(text_cfg, cache_dir=str(run / "text" / "cache"))
    emb_path = run / "text" / "embeddings.arrow"
    text_dim = embed_captions(captions + prompts, text_cfg, emb_path)
    text_stats = None
    if cfg.model.text_norm and ckpt is None:  # a resumed run has them in its checkpoint
        if cfg.model.text_whiten:  # one pass over the captions for mean, std and covariance
            mean, std, cov = token_covariance(emb_path, range(len(captions)))
            text_stats = {"mean": mean.tolist(), "std": std.tolist(), "cov": cov.astype(np.float32)}
        else:
            mean, std = token_stats(emb_path, range(len(captions)))
            text_stats = {"mean": mean.tolist(), "std": std.tolist()}
    total_mb = cfg.steps * cfg.grad_accum
    if ckpt is not None:
        log.info("resuming run %s from step %d (micro-batch %d, %s)", run, step0, mb0, ckpt.name)
    else:
        log.info(
            "starting run %s: %d clips (of %d in the inputs) from %d file(s)",
            run,
            index.num_rows,
            pairs_total(index),
            len(files),
        )
    if step0 >= cfg.steps:
        log.info("run %s is already at step %d >= steps=%d; nothing to do", run, step0, cfg.steps)
        return {"run": str(run), "start_step": step0, "final_step": step0, "resumed": True}
    rows = list(plan_rows(index, cfg, cfg.workers, mb0, total_mb))
    if cfg.augments:
        codes = [a for r in rows for a in r["augment"]]
        log.info(
            "augmentation: %d of %d planned samples mirrored, %d reversed (train.augment)",
            sum(bool(a & MIRROR) for a in codes),
            len(codes),
            sum(bool(a & REVERSE) for a in codes),
        )
    if cfg.short_caption_fraction:
        flags = [f for r in rows for f in r["short"]]
        log.info(
            "short captions: %d of %d planned samples (train.short_caption_fraction)",
            sum(flags),
            len(flags),
        )
    fps = float(np.median(index.column("fps").to_numpy())) / max(1, cfg.frame_stride)
    h, w = cfg.bucket_sizes()[0]
    loop_config = {
        "train": to_dict(cfg),
        "run_dir": str(run),
        "text_dim": text_dim,
        "text_stats": text_stats,
        "embeddings": str(emb_path),
        "prompt_idx": list(range(len(captions), len(captions) + len(prompts))),
        "video": {"frames": cfg.num_frames, "height": h, "width": w, "fps": round(fps, 3)},
        "crash_at": crash_at,
    }
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=run.name,
            storage_path=str(run.parent),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        ),
        datasets={"train": make_plan_dataset(rows)},
        dataset_config=RankDataConfig(str(emb_path), cfg.loader_cpus),
    )
    result = trainer.fit()
    final_step, _, last = data_position(run)
    if final_step < cfg.steps:
        log.warning(
            "run %s stopped at step %d of %d (train.max_minutes=%g); rerun to continue",
            run,
            final_step,
            cfg.steps,
            cfg.max_minutes,
        )
    return {
        "run": str(run),
        "start_step": step0,
        "final_step": final_step,
        "resumed": ckpt is not None,
        "pairs": index.num_rows,
        "pairs_total": pairs_total(index),
        "checkpoint": str(last) if last else None,
        "metrics": dict(result.metrics or {}),
    }
