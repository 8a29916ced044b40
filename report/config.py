"""Configuration of ``spacetime report`` (a frozen dataclass; YAML section ``report:``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportConfig:
    """What the dataset report computes and how much of it it shows."""

    bins: int = 30
    """Histogram bins per numeric column (fixed-width between the column's min and max)."""

    gallery_kept: int = 12
    """Kept clips (or pairs) shown in the gallery: a seeded uniform sample (bottom-k by hash)."""

    gallery_per_reason: int = 3
    """Rejected rows shown per (stage, reason) in the gallery."""

    thumb_frames: int = 4
    """Frames in each gallery strip (evenly spaced over the clip)."""

    thumb_height: int = 72
    """Height in pixels of each frame of a gallery strip."""

    seed: int = 0
    """Seed of the gallery sample (the same seed picks the same clips on the same data)."""

    terms_dir: str | None = None
    """An extra directory of term lists (``*.yaml``) merged over the packaged ``report/terms``;
    a category with the same name replaces the packaged one."""

    top_ngrams: int = 25
    """How many of the most frequent caption n-grams to list per n."""

    max_ngram: int = 3
    """Longest caption n-gram counted (1 = words only)."""

    max_sources: int = 30
    """Sources listed by name in the per-source breakdown (the rest are summed as "other")."""

    group_score_columns: tuple[str, ...] = ("alignment", "aesthetic", "nsfw", "motion")
    """Score columns whose mean is reported per caption term group (a sign of uneven filtering)."""

    min_group_captions: int = 5
    """Representation and co-occurrence rows with fewer captions than this are flagged as
    too small to read (they are still listed)."""

    batch_size: int = 4096
    """Rows per Ray Data batch in the aggregation passes (bounds worker memory)."""

    num_cpus: float = 0.5
    """CPUs reserved per aggregation task (fractional so a small machine never starves)."""

    def __post_init__(self) -> None:
        from common.config import ConfigError

        positive = ("bins", "thumb_frames", "thumb_height", "max_ngram", "batch_size")
        bad = [f"{n}={getattr(self, n)}" for n in positive if getattr(self, n) < 1]
        counts = ("gallery_kept", "gallery_per_reason", "top_ngrams", "max_sources",
                  "min_group_captions")  # fmt: skip
        bad += [f"{n}={getattr(self, n)}" for n in counts if getattr(self, n) < 0]
        if self.num_cpus <= 0:
            bad.append(f"num_cpus={self.num_cpus}")
        if bad:
            raise ConfigError(
                f"report: {', '.join(bad)} out of range ({', '.join(positive)} must be >= 1, "
                "the counts >= 0, num_cpus > 0)"
            )
