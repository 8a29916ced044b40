"""Config of ``spacetime curate`` (YAML section ``curate:``): splitting fields + nested stages.

The split fields (sources, probe, scenes, clips, resume, output shards) live here; the
scoring, filtering and dedup stages have their own dataclasses in ``curate.score_config``
and appear as the nested sections ``curate.score``, ``curate.filters``, ``curate.dedup``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from common.config import to_dict
from curate.score_config import DedupConfig, FilterConfig, ScoreConfig


@dataclass(frozen=True)
class CurateConfig:
    """Everything ``spacetime curate`` does to footage; defaults are the offline demo values."""

    short_side: int = 128
    """Largest short side of an encoded clip in pixels (never upscaled; width and height even)."""
    fps: float = 12.0
    """Frame rate clips are resampled to, on the source's timestamps: frames are dropped, and a
    source slower than this keeps its own rate; where a variable-rate source leaves an output
    slot without a frame, the frame on screen is held, so a clip plays at its real speed."""
    min_seconds: float = 1.0
    """Shortest clip kept; shorter scene pieces become `scene_too_short` rejects."""
    max_seconds: float = 4.0
    """Longest clip; longer scenes are cut into consecutive chunks of this length."""
    detector: Literal["adaptive", "content"] = "adaptive"
    """PySceneDetect cut detector: AdaptiveDetector (rolling-average content change) or
    ContentDetector (fixed threshold)."""
    adaptive_threshold: float = 3.0
    """AdaptiveDetector's adaptive_threshold (ratio of a frame's change to its neighbours')."""
    adaptive_min_content: float = 15.0
    """AdaptiveDetector's min_content_val: a frame's content change must also reach this to be
    a cut (PySceneDetect's default 15). A hard cut between two dim plain shots holding one
    small object can score less (14 in the demo's footage, so the demo preset uses 8)."""
    content_threshold: float = 27.0
    """ContentDetector's threshold on the HSV/edge content change (0..255)."""
    detector_min_scene_seconds: float = 0.3
    """Shortest scene the detector may report (suppresses flash double-cuts)."""
    detect_width: int = 256
    """Width of the downscaled frames scene detection runs on."""
    trim_frames: int = 2
    """Source frames dropped on each side of a detected cut, so no clip holds a transition frame."""
    dark_luma: float = 20.0
    """A frame whose mean luma (0..255) is at or below this is dark: a black stretch or the
    bottom of a fade; dark frames never go into a clip."""
    fade_max_seconds: float = 1.5
    """Longest fade ramp trimmed next to a dark stretch (frames darkening into it or
    brightening out of it)."""
    fade_luma_step: float = 0.5
    """Smallest change of mean luma per frame that counts as part of a fade ramp."""
    crf: int = 23
    """x264 constant rate factor of the re-encoded clips (lower is better quality, bigger)."""
    decoder: Literal["decord", "pyav"] = "decord"
    """Decoder of the single pass over each source (decord with resize-on-decode; PyAV is used
    where decord cannot open the stream)."""
    probe_timeout_s: float = 30.0
    """Seconds the isolated probe of one source may take before it becomes a
    `decode_timeout` reject."""
    split_timeout_s: float = 60.0
    """Base seconds the isolated decode+split of one source may take ..."""
    split_timeout_per_video_s: float = 4.0
    """... plus this many seconds per second of source video."""
    wave_size: int = 16
    """Sources per Ray Data job; a wave's rows are written and marked done together, so a
    crash loses at most one wave of work."""
    split_num_cpus: float = 1.0
    """Ray CPUs reserved per source being split (its decoder runs in a child process). A split
    keeps ~1.2-1.3 cores busy: decord decodes in a thread of its own, alongside the split's
    work (benchmarks/RESULTS.md, curate throughput, stop 32)."""
    max_concurrency: int = 0
    """Most sources split at once (0: as many as the cluster's CPUs allow). A cap keeps no split
    queued behind the running ones, so each next one waits to be scheduled (~0.1 s on a busy
    2-core machine); to run fewer at once, raise ``split_num_cpus`` instead."""
    shard_max_rows: int = 1000
    """Most rows per output Parquet shard."""
    shard_max_mb: float = 256.0
    """Approximate most bytes of clip video per output Parquet shard."""
    hash_full_max_mb: float = 64.0
    """Sources up to this size are hashed whole for source_id; larger ones hash their size plus
    the first, middle and last MiB."""
    score: ScoreConfig = field(default_factory=ScoreConfig)
    """Scoring (section curate.score)."""
    filters: FilterConfig = field(default_factory=FilterConfig)
    """Filter rules (section curate.filters)."""
    dedup: DedupConfig = field(default_factory=DedupConfig)
    """Near-duplicate removal (section curate.dedup)."""

    def __post_init__(self) -> None:
        if self.short_side < 2:
            raise ValueError(f"short_side must be >= 2, got {self.short_side}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(
                f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}"
            )
        if self.min_seconds * self.fps < 1 - 1e-9:
            raise ValueError(
                f"min_seconds={self.min_seconds} is shorter than one frame at fps={self.fps}: "
                f"a clip holds at least one output frame (min_seconds >= {1 / self.fps:.4g})"
            )
        if self.trim_frames < 0 or self.wave_size < 1 or self.shard_max_rows < 1:
            raise ValueError("trim_frames must be >= 0, wave_size and shard_max_rows >= 1")


CLIP_FIELDS = (
    "short_side",
    "fps",
    "min_seconds",
    "max_seconds",
    "detector",
    "adaptive_threshold",
    "adaptive_min_content",
    "content_threshold",
    "detector_min_scene_seconds",
    "detect_width",
    "trim_frames",
    "dark_luma",
    "fade_max_seconds",
    "fade_luma_step",
    "crf",
    "decoder",
)
"""Fields that change which clips are cut or what they contain: they enter every clip_id."""


def clip_config_hash(cfg: CurateConfig) -> str:
    """Short hash of the clip-affecting fields (part of every clip_id)."""
    sub = {k: getattr(cfg, k) for k in CLIP_FIELDS}
    return hashlib.sha256(json.dumps(sub, sort_keys=True).encode()).hexdigest()[:16]


def config_dict(cfg: CurateConfig) -> dict:
    """The resolved config as a JSON-friendly dict (for the manifest)."""
    return to_dict(cfg)


def replace(cfg: CurateConfig, **changes) -> CurateConfig:
    """``dataclasses.replace`` for configs (validates again)."""
    return dataclasses.replace(cfg, **changes)
