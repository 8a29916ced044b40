"""Declarative filter rules: exact reasons, details, order, nulls, score_only, config checks."""

from __future__ import annotations

import numpy as np
import pytest

from common.config import ConfigError, from_dict
from curate.filters import REASONS, RULES, apply_filters, check_filter_config, evaluate_rules
from curate.score_config import DedupConfig, FilterConfig, ScoreConfig
from curate.scoring import score_frames
from curate.synthetic import Shot, render_shot


def scored(shot: Shot, gain: float = 1.0) -> dict:
    f = np.stack(list(render_shot(shot, 160, 96, 12.0)))
    if gain != 1.0:
        f = np.clip(f.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    row = score_frames(f, 12.0, ScoreConfig(ocr=False))
    return {
        **row,
        "clip_id": "c",
        "start_s": 0.0,
        "end_s": len(f) / 12.0,
        "num_frames": len(f),
        "fps": 12.0,
    }


def test_dark_clip_trips_the_exposure_rule():
    cfg = FilterConfig(min_luma=40.0)
    dark = scored(Shot(kind="static", seconds=1.0, background=3), gain=0.2)
    drop = apply_filters(dark, cfg)
    assert drop is not None and drop["reason"] == "min_luma"
    assert drop["value"] == pytest.approx(dark["luma_mean"])
    assert drop["detail"] == f"luma_mean={dark['luma_mean']:.4g} < min_luma=40"
    assert apply_filters(scored(Shot(kind="static", seconds=1.0, background=3)), cfg) is None


def test_motion_camera_black_and_frozen_rules():
    static = scored(Shot(kind="static", seconds=1.0, background=3))
    pan = scored(Shot(kind="pan", seconds=1.0, direction="right", speed=0.2))
    black = scored(Shot(kind="black", seconds=1.0))
    cfg = FilterConfig(min_motion=0.1)
    assert apply_filters(static, cfg)["reason"] == "min_motion"
    assert apply_filters(pan, cfg) is None
    assert apply_filters(pan, FilterConfig(max_motion=1.0))["reason"] == "max_motion"
    cam = apply_filters(pan, FilterConfig(camera_motion_not_in=("pan_right", "shaky")))
    assert cam["reason"] == "camera_motion" and cam["detail"].startswith(
        "camera_motion=pan_right in"
    )
    assert apply_filters(pan, FilterConfig(camera_motion_not_in=("pan_left",))) is None
    assert apply_filters(black, FilterConfig())["reason"] == "black"  # on by default
    assert apply_filters(static, FilterConfig()) is None  # frozen is off by default
    assert apply_filters(static, FilterConfig(drop_frozen=True))["reason"] == "frozen"


def test_rule_order_null_scores_and_score_only():
    row = {"motion": 0.0, "sharpness": 1.0, "aesthetic": None, "start_s": 0.0, "end_s": 0.5}
    cfg = FilterConfig(min_motion=0.5, min_sharpness=10.0, min_aesthetic=5.0, min_seconds=1.0)
    assert apply_filters(row, cfg)["reason"] == "min_seconds"  # first in rule order
    assert [d["reason"] for d in evaluate_rules(row, cfg)] == [
        "min_seconds",
        "min_motion",
        "min_sharpness",
    ]
    assert apply_filters({**row, "end_s": 2.0}, cfg)["reason"] == "min_motion"
    only = FilterConfig(score_only=True, min_motion=0.5)
    assert (
        apply_filters(row, only) is None and evaluate_rules(row, only)[0]["reason"] == "min_motion"
    )
    assert apply_filters({"motion": None}, FilterConfig(min_motion=1.0)) is None


def test_every_filter_field_is_a_rule():
    fields = set(FilterConfig.__dataclass_fields__) - {"score_only", "min_camera_confidence"}
    assert {r.field for r in RULES} == fields
    assert len(set(REASONS)) == len(REASONS)


def test_config_check_and_yaml_coercion():
    with pytest.raises(ConfigError, match="min_aesthetic needs"):
        check_filter_config(FilterConfig(min_aesthetic=5.0), ScoreConfig())
    with pytest.raises(ConfigError, match="max_text_area needs"):
        check_filter_config(FilterConfig(max_text_area=0.1), ScoreConfig(ocr=False))
    with pytest.raises(ConfigError, match="embedding needs"):
        check_filter_config(FilterConfig(), ScoreConfig(), DedupConfig(embedding=True))
    check_filter_config(FilterConfig(max_text_area=0.1, min_motion=0.2), ScoreConfig())
    cfg = from_dict(FilterConfig, {"camera_motion_not_in": ["shaky"], "min_motion": 0.2})
    assert cfg.camera_motion_not_in == ("shaky",)
    with pytest.raises(ConfigError, match="unknown class"):
        from_dict(FilterConfig, {"camera_motion_not_in": ["wobbly"]})


@pytest.mark.parametrize(
    ("bad", "said"),
    [({"max_text_area": 1.5}, "max_text_area=1.5: must be between 0 and 1"),
     ({"max_nsfw": -0.1}, "max_nsfw=-0.1: must be between 0 and 1"),
     ({"min_luma": 300.0}, "min_luma=300: must be between 0 and 255"),
     ({"min_motion": -1.0}, "min_motion=-1: must be at least 0"),
     ({"min_luma": 200.0, "max_luma": 100.0}, "min_luma=200 > max_luma=100")],
)  # fmt: skip
def test_thresholds_outside_their_scores_range_are_refused(bad, said):
    with pytest.raises(ValueError, match=said):
        FilterConfig(**bad)
    FilterConfig(max_text_area=1.0, max_nsfw=0.0, min_luma=0.0, max_luma=255.0)  # the bounds


def test_rules_that_could_not_judge_a_clip_are_counted():
    import pyarrow as pa

    from curate.filters import unjudged
    from curate.manifest import summary

    t = pa.table({"text_area": pa.array([0.1, None, None], pa.float64()),
                  "motion": pa.array([float("nan"), 1.0, 2.0]),
                  "is_black": pa.array([False, False, None]),
                  "sharpness": pa.array([None, None, None], pa.float64())})  # fmt: skip
    cfg = FilterConfig(max_text_area=0.2, min_motion=0.5)  # sharpness: no rule, not counted
    assert unjudged(t, cfg) == {"max_text_area": 2, "min_motion": 1, "black": 1}
    assert unjudged(t, FilterConfig(drop_black=False)) == {}
    m = {"counts": {"sources_seen": 1, "sources_ok": 1, "sources_failed": 0, "clips_kept": 3,
                    "clips_rejected": 0}, "filters_unjudged": {"max_text_area": 2}}  # fmt: skip
    assert "not judged (null score, kept): max_text_area=2" in summary(m)


def test_filter_stage_turns_model_errors_and_rule_failures_into_rejects():
    """The pipeline's filter stage: a failed model score is a ``stage=score`` reject, a rule
    failure a ``stage=filter`` reject, a passing clip stays; non-clip rows pass untouched."""
    from curate.config import CurateConfig
    from curate.stages import filter_batch, to_staged

    cfg = from_dict(CurateConfig, {"filters": {"min_seconds": 1.0}})
    base = {"_kind": "clip", "source_id": "s", "source_path": "a.mp4", "video": b"x"}
    rows = [
        {**base, "clip_id": "ok", "start_s": 0.0, "end_s": 2.0, "_score_error": None},
        {
            **base,
            "clip_id": "bad",
            "start_s": 0.0,
            "end_s": 2.0,
            "_score_error": "model_error: RuntimeError: boom",
        },  # fmt: skip
        {**base, "clip_id": "short", "start_s": 0.0, "end_s": 0.5, "_score_error": None},
        {"_kind": "source", "source_id": "s", "source_path": "a.mp4", "status": "ok"},
    ]
    out = {r["clip_id"] or r["_kind"]: r for r in filter_batch(to_staged(rows), cfg).to_pylist()}
    assert out["ok"]["_kind"] == "clip" and out["ok"]["video"] == b"x"
    bad = out["bad"]
    assert (bad["_kind"], bad["stage"], bad["reason"]) == ("reject", "score", "model_error")
    assert "boom" in bad["detail"] and bad["video"] is None
    short = out["short"]
    assert (short["_kind"], short["stage"], short["reason"]) == ("reject", "filter", "min_seconds")
    assert out["source"]["status"] == "ok"


def test_run_curate_refuses_a_rule_whose_scorer_is_off(tmp_path):
    from curate.config import CurateConfig
    from curate.pipeline import run_curate

    cfg = from_dict(CurateConfig, {"filters": {"max_nsfw": 0.5}})
    with pytest.raises(ConfigError, match="max_nsfw"):
        run_curate([str(tmp_path)], tmp_path / "out", cfg)


def test_min_seconds_allows_timestamp_rounding_and_details_tell_value_from_limit():
    """decord's float timestamps: a 12-frame clip at 12 fps after a 2-frame trim spans
    1.166667 - 0.166667 = 0.9999999999999999 s, which is min_seconds=1, not under it. A value
    just under a limit is printed with the digits that show it is under."""
    cfg = FilterConfig(drop_black=False, min_seconds=1.0)
    assert apply_filters({"start_s": 0.166667, "end_s": 1.166667}, cfg) is None
    short = apply_filters({"start_s": 0.0, "end_s": 0.99}, cfg)
    assert short["detail"] == "seconds=0.99 < min_seconds=1" and short["value"] == 0.99
    drop = apply_filters({"sharpness": 99.996}, FilterConfig(min_sharpness=100.0))
    assert drop["detail"] == "sharpness=99.996 < min_sharpness=100"
    drop = apply_filters({"motion": 2.0000001}, FilterConfig(max_motion=2.0))
    assert drop["detail"] == "motion=2.0000001 > max_motion=2"
