"""The offline attribute captioner, and the recaption job end to end (resume, rejects, manifest)."""

from __future__ import annotations

import dataclasses
import json

import pyarrow.parquet as pq
import pytest

from curate.synthetic import Shot
from recaption.backend_attributes import AttributesBackend, describe, object_color
from recaption.base import CaptionRequest
from recaption.config import RecaptionConfig
from recaption.pipeline import done_clip_ids, run_recaption
from recaption.testing import truth_scores, write_clips
from schemas.validate import check_file


def _row(**kw):
    base = {"start_s": 0.0, "end_s": 2.1, "fps": 12.0, "width": 160, "height": 96}
    return {**base, **kw}


@pytest.mark.parametrize("color", ["red", "blue", "yellow"])
@pytest.mark.parametrize("direction", ["left", "right", "up", "down"])
def test_caption_states_colour_and_direction(color, direction):
    shot = Shot(color=color, direction=direction)
    dense, short = describe(_row(**truth_scores(shot)))
    assert f"{color} object moving {direction}" in short
    assert "the camera does not move" in short
    assert dense.startswith(short)
    assert "2.1 seconds" in dense and "12 fps" in dense
    for other in {"red", "blue", "yellow"} - {color}:
        assert other not in dense


def test_example_from_the_issue():
    row = _row(dominant_colors=["dark gray", "red"], motion_direction="left", camera_motion="static",
               luma_mean=40.0, dark_frac=0.2, motion=1.0)  # fmt: skip
    dense, _ = describe(row)
    assert dense.startswith(
        "A red object moving left across a dark frame; the camera does not move."
    )
    assert "Dark scene." in dense and "2.1 seconds" in dense


def test_background_colour_is_not_the_object():
    assert object_color(["red", "gray"]) is None  # the most covering colour is the background
    assert object_color(["gray", "black", "orange"]) == "orange"
    assert object_color(["white", "black"]) is None
    dense, _ = describe(
        _row(dominant_colors=["gray"], motion_direction="right", camera_motion="static")
    )
    assert dense.startswith("Something moving right")


def test_camera_motion_is_described_not_object_motion():
    dense, short = describe(_row(**truth_scores(Shot(kind="pan", direction="left"))))
    assert short == "The camera pans left."
    assert "object" not in dense


def test_null_scores_are_not_claimed():
    dense, short = describe(_row())
    for claim in ("camera", "object", "moves", "colour", "scene.", "lit", "motion"):
        assert claim not in dense, claim
    assert "2.1 seconds" in dense


def test_backend_interface_and_lineage():
    be = AttributesBackend()
    assert be.source == "attributes" and not be.needs_frames
    req = CaptionRequest("c1", None, _row(**truth_scores(Shot(color="green", direction="up"))))
    dense, short = be.caption([req], "dense")[0], be.caption([req], "short")[0]
    assert "green object moving up" in dense.text and dense.error is None
    assert short.text.count(".") == 1


def test_scorer_columns_give_the_caption(tmp_path):
    """With curate's weight-free scorers (when present) the caption states the shot's truth."""
    pytest.importorskip("curate.scoring")
    rows = write_clips(tmp_path, [Shot(color="red", direction="left", seconds=2.0, speed=0.3)],
                       size=(128, 96), scores="scorers")  # fmt: skip
    dense, _ = describe(rows[0])
    assert "red" in dense, (dense, rows[0].get("dominant_colors"))
    assert "moving left" in dense, (dense, rows[0].get("motion_direction"))


SHOTS = [
    Shot(color="red", direction="left", seconds=1.0),
    Shot(color="blue", direction="up", seconds=1.0),
    Shot(kind="pan", direction="right", seconds=1.0),
    Shot(kind="black", seconds=1.0),
]


def _pairs(out):
    files = sorted((out / "pairs").glob("*.parquet"))
    for f in files:
        check_file(str(f), "pairs")
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _caption_rejects(out):
    return [
        r
        for f in sorted((out / "rejects").glob("caption-*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]


def test_job_writes_pairs_rejects_and_resumes(ray_session, tmp_path):
    out = tmp_path / "out"
    rows = write_clips(out, SHOTS)
    (out / "manifest.json").write_text(
        json.dumps({"run_id": "curate-x", "counts": {"clips_kept": 4}})
    )
    cfg = RecaptionConfig(min_words=25)  # pan and black captions are shorter: too_short rejects

    first = run_recaption(out, cfg, limit=2)  # a partial run: two clips only
    assert first["last_run"]["captioned"] + first["last_run"]["rejected"] == 2
    assert len(done_clip_ids(out)) == 2

    # a run killed while committing leaves a hidden temporary shard and staging: not counted
    (out / "pairs" / ".part-dead-00000.parquet.tmp").write_bytes(b"half a shard")
    (out / "_recaption" / "dead").mkdir(parents=True)

    second = run_recaption(out, cfg)
    assert second["last_run"]["skipped_done"] == 2
    assert second["last_run"]["captioned"] + second["last_run"]["rejected"] == 2
    assert not list((out / "pairs").glob(".*")) and not (out / "_recaption").exists()

    pairs, rejects = _pairs(out), _caption_rejects(out)
    ids = [r["clip_id"] for r in pairs] + [r["clip_id"] for r in rejects]
    assert sorted(ids) == sorted(r["clip_id"] for r in rows)  # one row per clip, none twice
    assert [r["reason"] for r in rejects] == ["too_short", "too_short"]
    assert {r["clip_id"] for r in rejects} == {rows[2]["clip_id"], rows[3]["clip_id"]}
    assert rejects[0]["stage"] == "caption" and "min_words 25" in rejects[0]["detail"]
    by_id = {r["clip_id"]: r for r in pairs}
    red = by_id[rows[0]["clip_id"]]
    assert "red object moving left" in red["caption"]
    assert red["caption_short"].endswith("the camera does not move.")
    assert (
        red["caption_source"] == "attributes" and red["caption_prompt_version"] == "attributes-v2"
    )
    assert red["caption_model_revision"] == "attributes-v2" and red["captioned_at"] is not None
    assert red["caption_words"] == len(red["caption"].split()) and red["alignment"] is None
    assert red["video"] and red["motion_direction"] == "left"  # clip columns carried over

    third = run_recaption(out, cfg)  # nothing new: no clip captioned twice
    assert third["last_run"]["captioned"] == 0 and third["last_run"]["rejected"] == 0
    assert len(_pairs(out)) == 2

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] == "curate-x" and manifest["counts"] == {"clips_kept": 4}
    rc = manifest["recaption"]
    assert rc["counts"] == {"clips_seen": 4, "pairs": 2, "caption_rejected": 2, "pending": 0}
    assert rc["rejects_by_reason"] == {"too_short": 2}


def test_reject_names_cannot_collide_with_curate(ray_session, tmp_path):
    out = tmp_path / "out"
    write_clips(out, [dataclasses.replace(SHOTS[3])])
    run_recaption(out, RecaptionConfig(min_words=50))
    names = [p.name for p in (out / "rejects").glob("*.parquet")]
    assert names and all(n.startswith("caption-") for n in names)


def test_missing_clips_dir_fails_fast(tmp_path):
    with pytest.raises(FileNotFoundError, match="spacetime curate"):
        run_recaption(tmp_path, RecaptionConfig())


def test_a_failing_backend_makes_model_error_rows_not_a_crash(tmp_path, monkeypatch):
    from recaption.stages import CaptionStage

    rows = write_clips(tmp_path, SHOTS[:2])
    batch = pq.read_table(next((tmp_path / "clips").glob("*.parquet")))
    stage = CaptionStage(RecaptionConfig())

    def boom(reqs, kind="dense"):
        raise RuntimeError("device lost")

    monkeypatch.setattr(stage.backend, "caption", boom)
    out = stage(batch).to_pylist()
    assert [r["clip_id"] for r in out] == [r["clip_id"] for r in rows]
    assert {(r["_kind"], r["stage"], r["reason"]) for r in out} == {
        ("reject", "caption", "model_error")
    }
    assert all("device lost" in r["detail"] and r["video"] is None for r in out)


def test_shard_max_rows_is_a_maximum(ray_session, tmp_path):
    out = tmp_path / "out"
    write_clips(out, SHOTS)
    run_recaption(out, RecaptionConfig(min_words=1, shard_max_rows=3))
    sizes = sorted(pq.ParquetFile(f).metadata.num_rows for f in (out / "pairs").glob("*.parquet"))
    assert sizes == [1, 3]


def test_work_staged_by_a_run_that_died_before_its_commit_is_kept(ray_session, tmp_path):
    """The staged files a crashed run finished are committed by the rerun (not captioned
    again); a file the crash cut short is skipped and its clips captioned anew."""
    from recaption.pipeline import STAGING, build_dataset

    out = tmp_path / "out"
    rows = write_clips(out, SHOTS)
    cfg = RecaptionConfig(min_words=1)
    clip_files = sorted((out / "clips").glob("*.parquet"))
    # what the job had written when the process died, before the commit
    build_dataset(clip_files, set(), cfg, limit=None).write_parquet(str(out / STAGING / "run1"))
    (out / STAGING / "run1" / "cut-short.parquet").write_bytes(b"PAR1 half a file")
    section = run_recaption(out, cfg)
    assert section["last_run"]["recovered"] == len(rows) and section["last_run"]["captioned"] == 0
    assert section["counts"]["pairs"] == len(rows) and section["counts"]["pending"] == 0
    assert sorted(done_clip_ids(out)) == sorted(r["clip_id"] for r in rows)
    assert not (out / STAGING).exists()


def test_the_object_colour_is_among_the_listed_colours_and_a_bad_row_fails_alone():
    row = {"dominant_colors": ["blue", "black", "gray", "white", "red"],
           "motion_direction": "left", "camera_motion": "static", "motion": 1.0}  # fmt: skip
    dense, _ = describe(row)
    assert dense.startswith("A red object moving left")
    assert "Dominant colours: blue, black, gray, white, red." in dense
    good = {"camera_motion": "pan_left", "dominant_colors": ["gray"]}
    bad = {"camera_motion": "static", "dominant_colors": ["gray", 5]}
    out = AttributesBackend().caption(
        [CaptionRequest("ok", None, good), CaptionRequest("bad", None, bad)]
    )
    assert out[0].text and out[0].error is None
    assert out[1].error == "model_error" and "AttributeError" in out[1].detail
