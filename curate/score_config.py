"""Configs of the scoring, filtering and dedup stages (sections curate.score, curate.filters,
curate.dedup).

Defaults are the offline demo values: every weight-free scorer and OCR on (their models ship
inside installed wheels), every scorer that needs downloaded weights off.
"""

from __future__ import annotations

from dataclasses import dataclass

CAMERA_CLASSES = (
    "static",
    "pan_left",
    "pan_right",
    "tilt_up",
    "tilt_down",
    "zoom_in",
    "zoom_out",
    "shaky",
)
"""Values of the ``camera_motion`` score."""


@dataclass(frozen=True)
class ScoreConfig:
    """How clips are measured (the frames of a clip are decoded once and shared by scorers)."""

    sample_fps: float = 2.0
    """Frames per second sampled from each clip for scoring (decoded once, shared by scorers)."""
    analysis_short_side: int = 48
    """Short side in pixels of the downsized frames motion, flow, camera, exposure and colour
    run on (never upscaled)."""
    flow_step: int = 1
    """Clip frames between the two frames of each flow pair (one pair per sampled frame; 1:
    adjacent frames, accurate for fast motion; larger: more sensitive to slow motion)."""
    max_samples: int = 48
    """Most sampled frames per clip (long clips are sampled more sparsely)."""
    sharpness_short_side: int = 256
    """Short side the sharpness (variance of the Laplacian) is measured at (never upscaled), so
    values compare across resolutions."""
    sharpness_frames: int = 5
    """Evenly spaced sampled frames the sharpness median is taken over."""
    dark_level: int = 16
    """Luma (0..255) at or below which a pixel counts in ``dark_frac``."""
    bright_level: int = 235
    """Luma (0..255) at or above which a pixel counts in ``bright_frac`` (clipped highlights)."""
    black_luma: float = 20.0
    """A sampled frame whose mean luma is at or below this is a black frame."""
    black_share: float = 0.9
    """``is_black`` when at least this share of the sampled frames are black frames."""
    static_diff: float = 1.0
    """A flow pair is near-static when its frames' mean absolute gray difference (0..255) is
    below this ..."""
    static_motion: float = 0.15
    """... and their mean flow magnitude (px/frame at 256 px short side) is below this."""
    frozen_diff: float = 1.0
    """``is_frozen`` when no flow pair moves and every pair, consecutive samples and the first
    and last samples differ by less than this mean absolute gray level (a still image held;
    black clips are not frozen). A lossy codec makes a held image pulse: x264 gave a still
    shot frame-to-frame differences up to 1.0 and sampled ones up to 0.52; a slow zoom differs
    as little between neighbours, but drifts from its first frame."""
    camera_min_motion: float = 0.5
    """Global (camera) motion below this, in px/frame at 256 px short side (translation, or the
    zoom's displacement at the frame edge), is ``static``."""
    camera_texture: float = 24.0
    """Least Sobel gradient (|gx| + |gy| of the 0..255 flow image) of a point the camera fit
    uses: flow in flat regions carries no information."""
    camera_min_support: float = 0.2
    """Least share of the frame (textured points agreeing with the fit) for a pair's camera
    motion to count; below it (a lone object on a plain background) the camera is still."""
    camera_shaky: float = 1.5
    """Spread (std, px/frame at 256 px short side) of the per-pair camera translation above
    which, when larger than the mean translation, the camera is ``shaky``."""
    object_min_motion: float = 0.5
    """Flow left after removing the camera motion, in px/frame at 256 px short side, above which
    a pixel counts as moving content (for ``motion_direction``)."""
    object_min_area: float = 0.002
    """Least share of the frame that must move in a sample pair for it to count as moving (for
    ``motion_direction``, ``static_frac`` and ``is_frozen``)."""
    dominant_min_share: float = 0.015
    """Least share of the pixels a named colour must cover to appear in ``dominant_colors``."""
    dominant_max_colors: int = 5
    """Most named colours listed in ``dominant_colors``."""
    phash_frames: int = 3
    """Key frames hashed (evenly spaced, at the centres of equal thirds for 3); the middle
    one is the one dedup bands on."""
    ocr: bool = True
    """Measure ``text_area`` with RapidOCR's text detector (its ONNX model ships in the
    rapidocr-onnxruntime wheel; null with a warning where the package is absent)."""
    ocr_frames: int = 1
    """Evenly spaced frames the text detector runs on (``text_area`` is the largest share)."""
    ocr_max_side: int = 320
    """Long side the text detector resizes a frame to (smaller is faster, misses small text)."""
    clip_model: str = ""
    """open_clip model name for frame embeddings (ViT-L-14-quickgelu for OpenAI's weights); empty: no model scorers."""
    clip_pretrained: str = ""
    """open_clip ``pretrained`` tag (e.g. openai, laion2b_s32b_b82k; must be in the local
    Hugging Face cache unless allow_download) or a local checkpoint file."""
    clip_model_config: str = ""
    """Optional path of an open_clip model config JSON, registered before the model is built
    (for custom architectures; its file name without .json is the model name)."""
    aesthetic_head: str = ""
    """Path of the LAION aesthetic predictor head (.pth / .safetensors; linear or the MLP of
    improved-aesthetic-predictor) on L2-normalised ViT-L/14 embeddings; empty: no aesthetic."""
    nsfw_model: str = ""
    """NSFW scorer: a transformers image-classification model id or local dir, or a head file
    (.pth / .safetensors) on the open_clip embeddings; empty: no nsfw score."""
    nsfw_labels: tuple[str, ...] = ("nsfw", "porn", "hentai", "sexy", "unsafe")
    """Class labels (lower case) whose probabilities add up to the nsfw score."""
    allow_download: bool = False
    """Let open_clip / transformers fetch missing weights from the Hugging Face Hub when the
    model stage starts (off: missing weights are a start-up error naming them)."""
    model_frames: int = 3
    """Key frames per clip given to the model scorers (JPEG, evenly spaced)."""
    model_frame_size: int = 224
    """Short side of those key frames in pixels (never upscaled)."""
    device: str = "auto"
    """Device of the model scorers: auto (cuda when the actor has a GPU), cpu or cuda."""
    num_gpus: float = 0.0
    """GPUs per model-scorer actor (fractions share a GPU)."""
    num_cpus: float = 1.0
    """CPUs per model-scorer actor."""
    num_actors: int = 1
    """Model-scorer actors (the actor pool size)."""
    batch_size: int = 16
    """Clips per model-scorer batch."""

    def __post_init__(self) -> None:
        if self.sample_fps <= 0:
            raise ValueError(f"sample_fps must be > 0, got {self.sample_fps}")
        if self.analysis_short_side < 16 or self.sharpness_short_side < 16:
            raise ValueError("analysis_short_side and sharpness_short_side must be >= 16")
        if self.aesthetic_head and not self.clip_model:
            raise ValueError(
                "aesthetic_head needs clip_model (the head scores open_clip ViT-L/14 embeddings)"
            )
        if (
            self.phash_frames < 1
            or self.max_samples < 2
            or self.model_frames < 1
            or self.flow_step < 1
        ):
            raise ValueError("phash_frames, model_frames, flow_step >= 1 and max_samples >= 2")

    @property
    def model_scorers_enabled(self) -> bool:
        """Whether the model-scorer actor stage runs (open_clip and/or NSFW configured)."""
        return bool(self.clip_model or self.nsfw_model)


@dataclass(frozen=True)
class FilterConfig:
    """Declarative drop rules; each drop writes a reject row named after the rule.

    Every threshold is off when null. A clip whose score is null (scorer disabled or failed)
    never trips that score's rule. Rules run in the order of the fields below; the first rule
    that trips names the reject. Reasons are the field names, except ``drop_black`` → black,
    ``drop_frozen`` → frozen and ``camera_motion_not_in`` → camera_motion.
    """

    score_only: bool = False
    """Keep every clip and only record the scores (no filter drops); the manifest's
    ``filters_would_drop`` counts, per reason, the kept clips the filters would have dropped.
    Dedup still drops near-duplicates (``dedup.enabled``), and runs first: a clip a filter
    would drop can be the copy dedup kept, so the counts can differ from a run with filters."""
    drop_black: bool = True
    """Drop black clips (``is_black``), reason ``black``."""
    drop_frozen: bool = False
    """Drop frozen clips (a held still image, ``is_frozen``), reason ``frozen``."""
    min_seconds: float | None = None
    """Drop clips shorter than this many seconds."""
    min_luma: float | None = None
    """Drop clips whose mean luma (0..255) is below this (under-exposed)."""
    max_luma: float | None = None
    """Drop clips whose mean luma (0..255) is above this (over-exposed)."""
    max_dark_frac: float | None = None
    """Drop clips with more than this share of crushed dark pixels."""
    max_bright_frac: float | None = None
    """Drop clips with more than this share of clipped bright pixels."""
    max_static_frac: float | None = None
    """Drop clips with more than this share of near-static sampled frame pairs."""
    min_motion: float | None = None
    """Drop clips whose mean flow magnitude (px/frame at 256 px short side) is below this."""
    max_motion: float | None = None
    """Drop clips whose mean flow magnitude is above this (whip pans, flicker)."""
    min_sharpness: float | None = None
    """Drop clips whose sharpness (variance of the Laplacian) is below this (blur)."""
    min_colorfulness: float | None = None
    """Drop clips whose colourfulness (Hasler-Suesstrunk) is below this."""
    camera_motion_not_in: tuple[str, ...] = ()
    """Drop clips whose camera_motion is one of these classes (e.g. [shaky])."""
    min_camera_confidence: float | None = None
    """Only apply camera_motion_not_in when camera_confidence is at least this (null: always)."""
    max_text_area: float | None = None
    """Drop clips whose text covers more than this share of the frame (needs score.ocr)."""
    min_aesthetic: float | None = None
    """Drop clips whose LAION aesthetic score is below this (needs score.aesthetic_head)."""
    max_nsfw: float | None = None
    """Drop clips whose NSFW probability is above this (needs score.nsfw_model)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.camera_motion_not_in) - set(CAMERA_CLASSES))
        if unknown:
            raise ValueError(
                f"camera_motion_not_in: unknown class(es) {unknown}; known: {list(CAMERA_CLASSES)}"
            )
        # a threshold outside its score's range can never trip (or always does): a mistake
        ranges = {**dict.fromkeys(_SHARES, (0.0, 1.0)), **dict.fromkeys(_LUMAS, (0.0, 255.0))}
        for name in (*_SHARES, *_LUMAS, *_NON_NEGATIVE):
            v = getattr(self, name)
            lo, hi = ranges.get(name, (0.0, float("inf")))
            if v is not None and not lo <= v <= hi:
                span = f"between {lo:g} and {hi:g}" if hi != float("inf") else "at least 0"
                raise ValueError(f"{name}={v:g}: must be {span} (null turns the rule off)")
        for lo_name, hi_name in (("min_luma", "max_luma"), ("min_motion", "max_motion")):
            lo, hi = getattr(self, lo_name), getattr(self, hi_name)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(
                    f"{lo_name}={lo:g} > {hi_name}={hi:g}: every clip would be dropped"
                )


_SHARES = ("max_dark_frac", "max_bright_frac", "max_static_frac", "min_camera_confidence",
           "max_text_area", "max_nsfw")  # fmt: skip
"""FilterConfig thresholds on a share or a probability (0..1)."""
_LUMAS = ("min_luma", "max_luma")
"""FilterConfig thresholds on a mean luma (0..255)."""
_NON_NEGATIVE = ("min_seconds", "min_motion", "max_motion", "min_sharpness", "min_colorfulness")
"""FilterConfig thresholds on a score that is never negative."""


@dataclass(frozen=True)
class DedupConfig:
    """Near-duplicate removal across the whole run (all sources, all waves)."""

    enabled: bool = True
    """Drop near-duplicate clips (perceptual hash within a Hamming radius)."""
    phash_radius: int = 6
    """Largest Hamming distance (of 64 bits, the largest over the aligned key-frame hashes)
    between two near-duplicate clips."""
    phash_bands: int = 0
    """Bands the middle key frame's 64-bit hash is cut into for candidate grouping; at least
    phash_radius + 1 (pigeonhole: two hashes within the radius share a band). 0: radius + 1."""
    color_jaccard: float = 0.5
    """pHash is luma-only: two hash near-duplicates must also share at least this Jaccard
    share of their dominant_colors (the same layout in other colours is no duplicate); 0: off,
    and clips without dominant_colors are not checked."""
    embedding: bool = False
    """Also drop clips whose open_clip embeddings have cosine similarity >= embedding_threshold
    (needs score.clip_model)."""
    embedding_threshold: float = 0.95
    """Cosine similarity at or above which two clip embeddings are duplicates."""
    embedding_bands: int = 16
    """Random-hyperplane LSH bands for the embedding candidates (more: higher recall)."""
    embedding_bits: int = 10
    """Hyperplanes (bits) per band (more: fewer, purer candidates)."""
    seed: int = 0
    """Seed of the random hyperplanes."""
    num_cpus: float = 0.25
    """Ray CPUs per dedup task (fractional, so it never starves other stages)."""
    num_partitions: int = 4
    """Shuffle partitions of the band-key groupby (Ray Data's sort shuffle by default, see
    docs/cluster.md); few keep small runs fast, raise it (e.g. 64+) for millions of clips."""
    files_per_read_task: int = 64
    """Staged files (one per source) each dedup read task reads. The dedup reads only their hash
    and ranking columns, and every read task costs scheduling: in the blocks Ray Data chose
    (one source's file split into 4) a small run's dedup took twice as long."""

    def __post_init__(self) -> None:
        if not 0 <= self.phash_radius < 64:
            raise ValueError(f"phash_radius must be in 0..63, got {self.phash_radius}")
        if self.phash_bands and not self.phash_radius < self.phash_bands <= 64:
            raise ValueError(
                f"phash_bands must be in phash_radius+1..64 (pigeonhole), got {self.phash_bands}"
            )
        if self.num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {self.num_partitions}")
        if self.files_per_read_task < 1:
            raise ValueError(f"files_per_read_task must be >= 1, got {self.files_per_read_task}")
        if not 0 < self.embedding_threshold <= 1:
            raise ValueError("embedding_threshold must be in (0, 1]")

    @property
    def bands(self) -> int:
        """Effective number of phash bands."""
        return self.phash_bands or self.phash_radius + 1
