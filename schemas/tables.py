"""Arrow schemas of every table spacetime writes, and their version.

Each table is a contract: what one stage writes, the next reads, and users open it with
pyarrow, DuckDB or pandas. Extend a schema by adding nullable columns; never rename.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"
"""Bumped when a table changes incompatibly. Written into every Parquet file's metadata."""

META_TABLE = b"spacetime.table"
META_VERSION = b"spacetime.schema_version"

# --- source videos (after probe) -------------------------------------------------------
SOURCES = pa.schema(
    [
        pa.field(
            "source_id", pa.string(), nullable=False
        ),  # sha256 of the content, hex[:32] (of the path when unreadable)
        pa.field(
            "source_path", pa.string(), nullable=False
        ),  # absolute local path (links resolved), or the URI as given
        pa.field("size_bytes", pa.int64()),
        pa.field("status", pa.string(), nullable=False),  # ok | failed | duplicate
        pa.field("error", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("variable_fps", pa.bool_()),
        pa.field("frame_count", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("rotation", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("num_clips", pa.int32()),  # its clips in OUT/clips (after filters and dedup)
    ]
)

# --- score columns carried by clips and pairs (all nullable: a disabled scorer is null) --
SCORES = [
    pa.field(
        "motion", pa.float32()
    ),  # mean Farneback flow magnitude, px/frame at 256 px short side
    pa.field("frame_diff", pa.float32()),  # mean abs difference of consecutive gray frames, 0..255
    pa.field("sharpness", pa.float32()),  # median variance of the Laplacian over sampled frames
    pa.field("luma_mean", pa.float32()),  # mean luma, 0..255
    pa.field("dark_frac", pa.float32()),  # share of pixels with luma <= 16
    pa.field("bright_frac", pa.float32()),  # share of pixels with luma >= 235
    pa.field("is_black", pa.bool_()),
    pa.field("is_frozen", pa.bool_()),
    pa.field("static_frac", pa.float32()),  # share of frame pairs with (almost) no change
    pa.field("colorfulness", pa.float32()),  # Hasler-Suesstrunk colourfulness
    pa.field("dominant_colors", pa.list_(pa.string())),  # named colours, most covering first
    pa.field(
        "camera_motion", pa.string()
    ),  # static|pan_left|pan_right|tilt_up|tilt_down|zoom_in|zoom_out|shaky
    pa.field("camera_confidence", pa.float32()),
    pa.field(
        "motion_direction", pa.string()
    ),  # dominant direction of moving content (left/right/up/down/none)
    pa.field("phash", pa.list_(pa.uint64())),  # 64-bit perceptual hashes of key frames
    pa.field("text_area", pa.float32()),  # share of frame area covered by detected text
    pa.field("aesthetic", pa.float32()),  # LAION aesthetic predictor, ~1..10
    pa.field("nsfw", pa.float32()),  # probability 0..1
    pa.field(
        "clip_embedding", pa.list_(pa.float32())
    ),  # mean L2-normalised open_clip frame embedding
]

CLIPS = pa.schema(
    [
        pa.field(
            "clip_id", pa.string(), nullable=False
        ),  # sha256(source_id, start, end, preset)[:32]
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("scene_index", pa.int32()),  # index of the scene within the source
        pa.field("start_s", pa.float64(), nullable=False),  # in the source's timeline
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),  # of the encoded clip
        pa.field("num_frames", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("video", pa.binary(), nullable=False),  # H.264 in MP4
        *SCORES,
    ]
)

REJECTS = pa.schema(
    [
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("clip_id", pa.string()),  # null for a source that failed before splitting
        pa.field(
            "stage", pa.string(), nullable=False
        ),  # source|probe|scenes|clip|score|filter|dedup|caption
        pa.field("reason", pa.string(), nullable=False),  # a named rule or failure kind
        pa.field("detail", pa.string()),  # the value and threshold, or the decoder's message
        pa.field("value", pa.float64()),  # the measured value for filter drops
        pa.field("kept_clip_id", pa.string()),  # for dedup drops: the representative kept
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
    ]
)

CAPTION_FIELDS = [
    pa.field("caption", pa.string(), nullable=False),  # dense description
    pa.field("caption_short", pa.string()),  # one sentence
    pa.field("caption_source", pa.string(), nullable=False),  # model id, or "attributes"
    pa.field("caption_model_revision", pa.string()),
    pa.field("caption_prompt_version", pa.string()),
    pa.field("captioned_at", pa.timestamp("us", tz="UTC")),
    pa.field("caption_words", pa.int32()),
    pa.field("alignment", pa.float32()),  # mean open_clip caption-frame cosine similarity
]

PAIRS = pa.schema([*CLIPS, *CAPTION_FIELDS])

# --- latents: pairs plus VAE latents, written by train/precompute_latents.py -------------
LATENT_FIELDS = [
    pa.field(
        "latents", pa.binary()
    ),  # C-order array bytes, dtype latent_dtype, shape (c, t, h, w); null on error
    pa.field("latent_dtype", pa.string()),  # numpy dtype name, e.g. float16
    pa.field("latent_c", pa.int32()),
    pa.field("latent_t", pa.int32()),
    pa.field("latent_h", pa.int32()),
    pa.field("latent_w", pa.int32()),
    pa.field(
        "latent_frames", pa.int32()
    ),  # pixel frames encoded (from frame 0, every latent_stride-th)
    pa.field("latent_stride", pa.int32()),
    pa.field(
        "latent_pixel_height", pa.int32()
    ),  # pixel size the clip was resized to before encoding
    pa.field("latent_pixel_width", pa.int32()),
    pa.field("latent_codec", pa.string()),  # e.g. vae:Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    pa.field("latent_error", pa.string()),  # named reason when latents is null
]

LATENTS = pa.schema([*PAIRS, *LATENT_FIELDS])

TABLES: dict[str, pa.Schema] = {
    "sources": SOURCES,
    "clips": CLIPS,
    "rejects": REJECTS,
    "pairs": PAIRS,
    "latents": LATENTS,
}

MANIFEST_COUNTS = ("sources_seen", "sources_ok", "sources_failed", "sources_duplicate",
                   "clips_kept", "clips_rejected")  # fmt: skip
"""Counts every manifest.json carries. sources_seen == sources_ok + sources_failed +
sources_duplicate, always (manifests before stop 35 have no sources_duplicate: their
sources_failed counts the duplicates)."""

MANIFEST_FIELDS = (
    "run_id",
    "created_at",
    "code_version",
    "schema_version",
    "config",
    "counts",
    "rejects_by_reason",
)
"""Top-level keys of manifest.json."""


def with_metadata(schema: pa.Schema, table_name: str) -> pa.Schema:
    """Return ``schema`` carrying the table name and schema version in its metadata."""
    meta = dict(schema.metadata or {})
    meta[META_TABLE] = table_name.encode()
    meta[META_VERSION] = SCHEMA_VERSION.encode()
    return schema.with_metadata(meta)


def schema_for(table_name: str) -> pa.Schema:
    """The schema of a named table, with spacetime metadata attached."""
    if table_name not in TABLES:
        raise KeyError(f"unknown table {table_name!r}; known: {sorted(TABLES)}")
    return with_metadata(TABLES[table_name], table_name)
