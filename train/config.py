"""The training config: model, flow, text, latents, data and loop settings in one frozen dataclass.

Resolved by ``load_train_config(preset, config_file, overrides)`` from the ``train:`` section
of ``configs/<preset>.yaml``. ``spacetime train --preset tiny`` picks a *model* size preset
(``train.model.MODEL_PRESETS``) on top of the ``demo`` YAML preset; ``--preset demo|full``
picks a YAML preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from common.config import ConfigError, load_stage_config
from train.flow import FlowConfig
from train.latents import LatentConfig
from train.model import MODEL_PRESETS, ModelConfig
from train.text import TextConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (written to RUN/train_config.json)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The DiT: size preset (tiny, S, B, L, XL) and per-field overrides."""
    flow: FlowConfig = field(default_factory=FlowConfig)
    """Rectified-flow objective and default sampler settings."""
    text: TextConfig = field(default_factory=TextConfig)
    """Text encoder; caption embeddings are computed once per caption before training."""
    latents: LatentConfig = field(default_factory=LatentConfig)
    """Pixel space (identity) or a video VAE; the trainer encodes each batch on its device."""

    # -- data
    num_frames: int = 8
    """Frames per video sample (a VAE codec needs 1 + 4k)."""
    frame_stride: int = 2
    """Take every stride-th source frame (reduced for clips too short for the full span)."""
    where: tuple[tuple[Any, ...], ...] = ()
    """Train only on the pairs that meet every condition, each ``[column, op, value]`` over a
    pairs column (pyarrow's filter tuples; op one of ==, !=, <, >, <=, >=, in, not in), e.g.
    ``[[camera_motion, ==, static], [motion_direction, in, [left, right, up, down]]]``. A null
    value never matches; quote '!=', '>' and '>=' in YAML. The run logs how many pairs the
    conditions keep (empty: every pair)."""
    buckets: tuple[str, ...] = ("32x32", "48x32", "32x48")
    """Frame sizes 'WIDTHxHEIGHT'; each clip is resized to cover, then centre-cropped to the
    bucket whose aspect ratio is nearest its own. One bucket shape per batch."""
    image_fraction: float = 0.1
    """Share of rows (drawn per clip and epoch) used as single-frame images (joint image training)."""
    mirror_fraction: float = 0.0
    """Share of rows (drawn per clip and epoch) flipped left-right, trained on their caption
    with "left" and "right" exchanged (``train.augment``)."""
    reverse_fraction: float = 0.0
    """Share of video rows (drawn per clip and epoch) played backwards, trained on their caption
    with every direction of motion exchanged (left/right, up/down, zoom in/out; places such as
    "on the left" stay). Only for footage whose motion looks the same backwards, e.g. the
    demo's moving shapes (``train.augment``)."""
    short_caption_fraction: float = 0.0
    """Share of rows (drawn per clip and epoch) trained on the pair's one-sentence
    ``caption_short`` instead of its dense ``caption``, as DALL-E 3 mixes short captions into
    its descriptive ones so that short prompts work too (a pair without one keeps its caption).
    1.0 trains on short captions only. Off by default."""
    batch_size: int = 4
    """Samples per worker per micro-batch."""
    loader_cpus: float = 0.5
    """CPUs per Ray Data decode task."""
    prefetch_batches: int = 2
    """Batches each worker prefetches from its Ray Data shard."""

    # -- optimisation
    steps: int = 300
    """Optimizer steps to train (a rerun with a larger value continues)."""
    max_minutes: float = 0.0
    """Stop this invocation after this many minutes of training steps, even before ``steps``
    (0 = no limit): the step reached gets a checkpoint and a rerun continues towards ``steps``.
    The demo sets it to stay within its time on a slow machine."""
    lr: float = 1e-3
    """Peak AdamW learning rate (reached after ``warmup`` steps; after it, see ``lr_decay``)."""
    warmup: int = 20
    """Linear learning-rate warmup steps."""
    lr_decay: str = "none"
    """Learning rate after the warmup: ``none`` (constant), ``cosine`` or ``linear`` (from
    ``lr`` down to ``lr * lr_final`` at ``steps``). A run continued with a larger ``steps``
    follows the schedule of the new ``steps``."""
    lr_final: float = 0.0
    """Final learning rate of ``lr_decay``, as a fraction of ``lr``."""
    lr_decay_start: float = 0.0
    """Where ``lr_decay`` begins, as a fraction of ``steps`` (0 = at the end of the warmup; e.g.
    0.7 keeps ``lr`` constant for 70% of the steps and decays over the last 30%)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, ...] = (0.9, 0.99)
    """AdamW betas."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    ema_decay: float = 0.99
    """Decay of the EMA of the weights (generation uses the EMA)."""

    # -- workers and precision
    workers: int = 1
    """Ray Train workers (data-parallel ranks)."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker (fractional is fine)."""
    torch_threads: int = 0
    """Intra-op threads of each worker's torch (0 = Ray's default, the worker's whole CPUs).
    On a CPU-only machine a worker may use more threads than the CPUs it reserves, e.g. the
    demo's one worker uses both cores of a 2-core box while the loader shares them."""
    use_gpu: bool = False
    """One GPU per worker."""
    strategy: str = "ddp"
    """'ddp' (DistributedDataParallel) or 'fsdp' (FSDP2 fully_shard per block)."""
    precision: str = "fp32"
    """'fp32' or 'bf16' (autocast; only on GPU, CPU runs stay fp32)."""
    compile: bool = False
    """torch.compile the model."""
    activation_checkpointing: bool = False
    """Recompute each block in backward (less memory, ~30% more compute)."""

    # -- bookkeeping
    checkpoint_every: int = 100
    """Save a checkpoint every N steps (and at the end)."""
    keep_checkpoints: int = 3
    """Checkpoints Ray Train keeps (older ones are deleted)."""
    sample_every: int = 0
    """Write sample videos every N steps to RUN/samples/ (0 = only at the end, -1 = never)."""
    sample_prompts: tuple[str, ...] = ("a red circle moving right", "a blue square moving up")
    """Fixed prompts for the sample videos."""
    sample_steps: int = 10
    """Euler steps for the sample videos."""
    log_every: int = 10
    """Log metrics (the log line, TensorBoard) every N steps; Ray Train gets them with each
    checkpoint (``checkpoint_every``), as a ``ray.train.report`` waits for Ray's controller."""
    seed: int = 0
    """Seed of the model init, the data order and the noise."""
    max_failures: int = 1
    """Worker-group restarts from the last checkpoint after a worker dies."""

    @property
    def augments(self) -> bool:
        """Whether any sample may be mirrored or reversed (``train.augment``)."""
        return bool(self.mirror_fraction or self.reverse_fraction)

    def resolved(self) -> TrainConfig:
        """Validate and fill the model preset; raises ConfigError naming the bad field."""
        if self.strategy not in ("ddp", "fsdp"):
            raise ConfigError(f"train.strategy must be 'ddp' or 'fsdp', got {self.strategy!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.model.preset not in MODEL_PRESETS:
            raise ConfigError(
                f"train.model.preset {self.model.preset!r} unknown; presets: {list(MODEL_PRESETS)}"
            )
        for name in ("num_frames", "batch_size", "steps", "grad_accum", "workers", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_minutes < 0:
            raise ConfigError(f"train.max_minutes must be >= 0, got {self.max_minutes}")
        if self.lr_decay not in ("none", "cosine", "linear"):
            raise ConfigError(
                f"train.lr_decay must be 'none', 'cosine' or 'linear', got {self.lr_decay!r}"
            )
        if not 0.0 <= self.lr_final <= 1.0:
            raise ConfigError(f"train.lr_final must be in [0, 1], got {self.lr_final}")
        if not 0.0 <= self.lr_decay_start < 1.0:
            raise ConfigError(f"train.lr_decay_start must be in [0, 1), got {self.lr_decay_start}")
        if self.torch_threads < 0:
            raise ConfigError(f"train.torch_threads must be >= 0, got {self.torch_threads}")
        for name in (
            "image_fraction",
            "mirror_fraction",
            "reverse_fraction",
            "short_caption_fraction",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"train.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.buckets:
            raise ConfigError("train.buckets is empty; give sizes like '32x32'")
        for b in self.buckets:
            parse_size(b)
        check_where(self.where)
        model = dataclasses.replace(
            self.model.resolved(),
            checkpoint_activations=self.activation_checkpointing
            or self.model.checkpoint_activations,
        )
        if model.patch_t > 1 and self.image_fraction > 0:
            raise ConfigError(
                f"train.image_fraction must be 0 with model.patch_t={model.patch_t} (a "
                f"single-frame sample cannot be cut into {model.patch_t}-frame patches), "
                f"got {self.image_fraction}"
            )
        if self.latents.codec == "identity":  # pixel space: the patches tile the frames
            if self.num_frames % model.patch_t:
                raise ConfigError(
                    f"train.num_frames={self.num_frames} is not a multiple of "
                    f"model.patch_t={model.patch_t}"
                )
            for b in self.buckets:
                w, h = parse_size(b)
                if w % model.patch_w or h % model.patch_h:
                    raise ConfigError(
                        f"train.buckets: {b} is not a multiple of the patch size "
                        f"{model.patch_w}x{model.patch_h} (model.patch_w x model.patch_h)"
                    )
        return dataclasses.replace(self, model=model)

    def bucket_sizes(self) -> list[tuple[int, int]]:
        """Bucket sizes as (height, width)."""
        return [parse_size(b)[::-1] for b in self.buckets]


WHERE_OPS = ("==", "!=", "<", ">", "<=", ">=", "in", "not in")
"""Operators of ``train.where`` conditions (those of pyarrow.parquet.filters_to_expression)."""


def check_where(where: Any) -> None:
    """ConfigError naming the bad condition of ``train.where``, unless every one is valid."""
    import pyarrow as pa

    from schemas.tables import PAIRS

    # scalar columns only: a list or the video bytes cannot be compared with a value
    columns = [
        f.name for f in PAIRS if not (pa.types.is_list(f.type) or pa.types.is_binary(f.type))
    ]
    for i, cond in enumerate(where):
        at = f"train.where[{i}]"
        if not isinstance(cond, (list, tuple)) or len(cond) != 3:
            raise ConfigError(f"{at}: expected [column, op, value], got {cond!r}")
        column, op, value = cond
        if column not in columns:
            raise ConfigError(f"{at}: {column!r} is not a scalar pairs column; columns: {columns}")
        if op not in WHERE_OPS:
            raise ConfigError(f"{at}: operator {op!r} is not one of {list(WHERE_OPS)}")
        if op in ("in", "not in") and not isinstance(value, (list, tuple)):
            raise ConfigError(f"{at}: {op!r} needs a list of values, got {value!r}")
        if op not in ("in", "not in") and isinstance(value, (list, tuple, dict)):
            raise ConfigError(f"{at}: {op!r} needs one value, got {value!r}")


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height); ConfigError when malformed."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError as e:
        raise ConfigError(f"bucket size must look like WIDTHxHEIGHT, got {text!r}") from e
    if w < 1 or h < 1:
        raise ConfigError(f"bucket size must be positive, got {text!r}")
    return w, h


def load_train_config(
    preset: str = "demo",
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """The ``train:`` section of a YAML preset, a config file and overrides, validated."""
    return load_stage_config(TrainConfig, "train", preset, config_file, overrides).resolved()
