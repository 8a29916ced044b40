"""score_frames returns exactly the weight-free score columns, in the clips schema's types."""

from __future__ import annotations

import numpy as np

from curate.score_config import ScoreConfig
from curate.score_context import sample_indices
from curate.scoring import WEIGHT_FREE_COLUMNS, decode_key_frame, key_frames, score_frames
from curate.synthetic import Shot, render_shot
from schemas.tables import SCORES
from schemas.validate import rows_to_table


def test_columns_match_schema_and_conform():
    f = np.stack(list(render_shot(Shot(kind="shape", seconds=1.0), 160, 96, 12.0)))
    s = score_frames(f, 12.0, ScoreConfig())
    model = {"aesthetic", "nsfw", "clip_embedding"}
    assert set(s) == {fld.name for fld in SCORES} - model == set(WEIGHT_FREE_COLUMNS)
    row = {"clip_id": "x", "source_id": "s", "source_path": "p", "start_s": 0.0, "end_s": 1.0,
           "fps": 12.0, "num_frames": len(f), "width": 160, "height": 96, "video": b"", **s}  # fmt: skip
    t = rows_to_table([row], "clips")
    assert t.column("phash").to_pylist()[0] == s["phash"]


def test_sampling_and_key_frames():
    cfg = ScoreConfig(sample_fps=4.0)
    assert list(sample_indices(24, 12.0, cfg)) == [0, 3, 7, 10, 13, 16, 20, 23]
    assert len(sample_indices(1, 12.0, cfg)) == 1
    f = np.stack(list(render_shot(Shot(kind="pan", seconds=1.0), 320, 180, 12.0)))
    keys = key_frames(f, 12.0, ScoreConfig(model_frames=3, model_frame_size=90))
    assert len(keys) == 3 and decode_key_frame(keys[0]).shape == (90, 160, 3)
    one = score_frames(f[:1], 12.0, ScoreConfig(ocr=False))  # a single frame still scores
    assert one["motion"] == 0.0 and one["camera_motion"] == "static"
