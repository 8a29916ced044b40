"""Text–video alignment with a tiny random open_clip model loaded from a local checkpoint."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.config import ConfigError
from curate.synthetic import Shot
from recaption.alignment import AlignmentScorer, check_weights
from recaption.base import WeightsMissing
from recaption.config import RecaptionConfig
from recaption.pipeline import run_recaption
from recaption.testing import tiny_clip_checkpoint, write_clips


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return tiny_clip_checkpoint(tmp_path_factory.mktemp("tiny-clip"))


def test_scores_are_cosines(tiny_clip):
    config, ckpt = tiny_clip
    scorer = AlignmentScorer(config, checkpoint=ckpt)
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 60, 3), dtype=np.uint8)
    a, b, none = scorer.score([frames, frames[:1], None], ["a red ball", "a red ball", "x"])
    assert -1.0 <= a <= 1.0 and -1.0 <= b <= 1.0 and none is None
    assert scorer.score([frames], ["a red ball"])[0] == pytest.approx(a, abs=1e-5)  # deterministic
    assert scorer.score([frames], [""])[0] is None


def test_missing_weights_fail_fast(tmp_path, tiny_clip):
    with pytest.raises(WeightsMissing, match="ViT-B-32/openai"):
        check_weights("ViT-B-32", "openai", "")
    with pytest.raises(WeightsMissing, match="does not exist"):
        check_weights(tiny_clip[0], "", str(tmp_path / "missing.pt"))
    with pytest.raises(WeightsMissing, match="no pretrained tag"):
        check_weights("ViT-B-32", "no-such-tag", "")


def test_min_alignment_needs_alignment(tmp_path):
    write_clips(tmp_path, [Shot(seconds=1.0)])
    with pytest.raises(ConfigError, match="alignment: true"):
        run_recaption(tmp_path, RecaptionConfig(min_alignment=0.2))


def test_job_scores_and_filters(ray_session, tiny_clip, tmp_path):
    config, ckpt = tiny_clip
    out = tmp_path / "out"
    rows = write_clips(
        out, [Shot(color="red", seconds=1.0), Shot(color="blue", direction="up", seconds=1.0)]
    )
    cfg = RecaptionConfig(
        alignment=True, alignment_model=config, alignment_checkpoint=ckpt, num_frames=2
    )
    run_recaption(out, cfg, limit=1)
    pairs = pq.read_table(next((out / "pairs").glob("*.parquet"))).to_pylist()
    assert len(pairs) == 1 and -1.0 <= pairs[0]["alignment"] <= 1.0
    # the next clip with an unreachable minimum: a low_alignment reject carrying the value
    strict = RecaptionConfig(alignment=True, alignment_model=config, alignment_checkpoint=ckpt,
                             num_frames=2, min_alignment=1.01)  # fmt: skip
    summary = run_recaption(out, strict)
    assert summary["rejects_by_reason"] == {"low_alignment": 1}
    rej = pq.read_table(next((out / "rejects").glob("caption-*.parquet"))).to_pylist()[0]
    assert rej["clip_id"] == ({r["clip_id"] for r in rows} - {pairs[0]["clip_id"]}).pop()
    assert rej["value"] < 1.01 and "min_alignment" in rej["detail"]


def test_a_failed_alignment_never_skips_min_alignment():
    """A batch the scorer fails on is scored clip by clip; with min_alignment set, a clip whose
    alignment stays unknown is not kept unchecked: a model_error reject (retried by a rerun).
    Without min_alignment its alignment is null."""
    import pyarrow as pa

    from recaption.stages import STAGED, AlignmentStage

    class Scorer:
        def score(self, frames, texts):
            if len(texts) > 1 or texts[0] == "boom":
                raise RuntimeError("CUDA out of memory")
            return [0.5 if texts[0] == "good" else 0.1]

    frames = np.zeros((1, 4, 4, 3), np.uint8)
    rows = [{"_kind": "pair", "clip_id": f"c{i}", "caption": t, "caption_short": t,
             "_frames": frames.tobytes(), "_frames_shape": list(frames.shape)}
            for i, t in enumerate(["good", "bad", "boom"])]  # fmt: skip
    schema = STAGED
    for name, typ in (("_frames", pa.binary()), ("_frames_shape", pa.list_(pa.int32()))):
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ))
    batch = pa.Table.from_pylist(rows, schema=schema)
    for lo, expect in (
        (0.25, [("pair", None), ("reject", "low_alignment"), ("reject", "model_error")]),
        (None, [("pair", None), ("pair", None), ("pair", None)]),
    ):
        stage = object.__new__(AlignmentStage)
        stage.cfg, stage.scorer = RecaptionConfig(alignment=True, min_alignment=lo), Scorer()
        out = stage(batch).to_pylist()
        assert [(r["_kind"], r["reason"]) for r in out] == expect
        assert [r["alignment"] for r in out] == [0.5, pytest.approx(0.1), None]
        if lo is not None:
            assert out[2]["detail"] == "alignment: RuntimeError: CUDA out of memory"
