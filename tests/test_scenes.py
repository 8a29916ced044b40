"""Scene planning: spans never cross a cut or a fade; real footage cut where its shots change."""

from __future__ import annotations

import numpy as np
import pytest

from curate.clips import split_source
from curate.config import CurateConfig
from curate.probe import probe
from curate.scenes import SpanPlanner, make_detector, plan_spans
from curate.synthetic import Shot, write_video

BIKES_CUTS = (30, 76, 137, 187, 242)  # first frame of each new shot in bikes.mp4


def clips(spans):
    return [(s.start, s.end) for s in spans if s.kind == "clip"]


def test_cuts_are_trimmed_and_long_scenes_chunked():
    cfg = CurateConfig(min_seconds=1.0, max_seconds=2.0, trim_frames=2)
    spans = plan_spans([100.0] * 100, [40], cfg, fps=10)
    # scene [0,40): 0..38 usable → one 2 s chunk [0,20) + [20,38); scene [40,100): 42.. chunks
    assert clips(spans) == [(0, 20), (20, 38), (42, 62), (62, 82), (82, 100)]


def test_short_pieces_are_named_drops():
    cfg = CurateConfig(min_seconds=1.0, max_seconds=4.0, trim_frames=1)
    spans = plan_spans([100.0] * 30, [5, 25], cfg, fps=10)
    assert clips(spans) == [(6, 24)]
    assert [(s.start, s.end) for s in spans if s.kind == "scene_too_short"] == [(0, 4), (26, 30)]


def test_spans_are_measured_in_the_frames_timestamps():
    """A variable-frame-rate source: 1 s at 20 fps, 3 s at 5 fps, 1 s at 20 fps (average 10
    fps). Counting frames at the average rate made a 3 s chunk of the slow part 6 s long and one
    of the fast part 1.5 s; chunks follow the timestamps now, and so does min_seconds."""
    times = [i / 20 for i in range(20)] + [1 + i / 5 for i in range(15)]
    times += [4 + i / 20 for i in range(20)]
    cfg = CurateConfig(min_seconds=1.0, max_seconds=3.0, trim_frames=0)
    spans = plan_spans([100.0] * len(times), [], cfg, fps=10, times=times)
    got = clips(spans)
    assert got == [(0, 30), (30, 55)], got

    def seconds(a: int, b: int) -> float:
        return (times[b] if b < len(times) else times[-1] + 0.1) - times[a]

    # the stream's last frame lasts one average period
    assert [round(seconds(a, b), 6) for a, b in got] == [3.0, 2.05]
    # a piece of 12 frames (>= 1 s at the average rate) that lasts 0.55 s is too short
    fast = [i / 20 for i in range(12)] + [0.6 + i / 5 for i in range(10)]
    spans = plan_spans([100.0] * 22, [12], cfg, fps=10, times=fast)
    assert [(s.start, s.end, s.kind) for s in spans] == [
        (0, 12, "scene_too_short"),
        (12, 22, "clip"),
    ]


def test_min_seconds_wins_where_no_whole_frame_count_fits_both():
    """min_seconds = max_seconds = 1 at 29.97 fps: 29 frames are under 1 s, 30 over; the clip
    keeps 30 (as before timestamps were used), not a clip under min_seconds."""
    cfg = CurateConfig(min_seconds=1.0, max_seconds=1.0, trim_frames=0)
    fps = 30000 / 1001
    spans = plan_spans([100.0] * 90, [], cfg, fps=fps, times=[i / fps for i in range(90)])
    assert clips(spans) == [(0, 30), (30, 60), (60, 90)]


def test_min_seconds_under_one_output_frame_is_refused():
    """A span shorter than the output frame period can hold no output frame."""
    with pytest.raises(ValueError, match="min_seconds=0.1 is shorter than one frame at fps=2"):
        CurateConfig(fps=2.0, min_seconds=0.1, max_seconds=0.25)
    assert CurateConfig(fps=2.0, min_seconds=0.5, max_seconds=1.0).min_seconds == 0.5


def test_fade_to_black_and_back_is_not_a_clip():
    fps, cfg = 10, CurateConfig(min_seconds=1.0, max_seconds=10.0, trim_frames=0)
    # 30 bright frames, 8-frame fade out, 10 black, 8-frame fade in, 30 bright
    luma = [120.0] * 30 + list(np.linspace(110, 15, 8)) + [3.0] * 10
    luma += list(np.linspace(15, 110, 8)) + [120.0] * 30
    spans = plan_spans(luma, [], cfg, fps)
    got = clips(spans)
    assert len(got) == 2
    (a0, a1), (b0, b1) = got
    assert a1 <= 30 and b0 >= 56, got  # nothing of the ramps or the black in a clip
    assert any(s.kind == "dark_or_fade" for s in spans)


def test_late_cut_reports_give_the_same_plan():
    """The detector reports a cut a few frames after it happens; the plan must not change."""
    cfg = CurateConfig(min_seconds=0.5, max_seconds=3.0, trim_frames=2)
    luma, cuts = [90.0] * 120, [33, 71]
    offline = plan_spans(luma, cuts, cfg, fps=10)
    p = SpanPlanner(cfg, fps=10)
    online = []
    for i, v in enumerate(luma):
        p.add_frame(v)
        for c in cuts:
            if i == c + 4:  # reported 4 frames late
                p.add_cut(c)
        online += p.advance()
    online += p.finish()
    assert clips(online) == clips(offline)


def test_bikes_clips_stay_inside_shots(bikes_mp4):
    info = probe(str(bikes_mp4))
    rows = split_source(str(bikes_mp4), "bikes", str(bikes_mp4), info, CurateConfig())
    kept = [r for r in rows if r["_kind"] == "clip"]
    assert len(kept) == 5  # the 6th shot (frames 242..250) is shorter than min_seconds
    bounds = (0, *BIKES_CUTS, 250)
    for r in kept:
        a, b = r["start_s"] * 25, r["end_s"] * 25
        shot = [(s, e) for s, e in zip(bounds, bounds[1:], strict=False) if s <= a + 1e-6 < e]
        assert shot and b <= shot[0][1] + 1e-6, (a, b)
        assert a >= shot[0][0] + (2 if shot[0][0] else 0) - 1e-6  # trimmed after a cut
    assert sorted({r["scene_index"] for r in kept}) == [0, 1, 2, 3, 4]


def test_bunny_is_one_shot(bunny_mp4):
    info = probe(str(bunny_mp4))
    rows = split_source(str(bunny_mp4), "bunny", str(bunny_mp4), info, CurateConfig())
    kept = sorted(
        (r["start_s"], r["end_s"], r["scene_index"]) for r in rows if r["_kind"] == "clip"
    )
    assert {k[2] for k in kept} == {0}
    assert kept[0][0] == pytest.approx(0.0)
    for (_a0, a1, _), (b0, _b1, _) in zip(kept, kept[1:], strict=False):
        assert b0 == pytest.approx(a1)  # one shot: consecutive max_seconds chunks, no gaps
    assert kept[-1][1] == pytest.approx(info["duration_s"], abs=0.05)


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_synthetic_cuts_and_fades(tmp_path, detector):
    shots = [
        Shot(kind="shape", seconds=2.0, color="red", direction="right", background=1),
        Shot(kind="pan", seconds=2.0, direction="left", background=2, fade_out=0.5),
        Shot(kind="shape", seconds=2.0, color="blue", direction="up", background=3, fade_in=0.5),
        Shot(kind="black", seconds=1.0),
        Shot(kind="zoom", seconds=2.5, direction="in", background=4),
    ]
    truth = write_video(tmp_path / "s.mp4", shots, width=128, height=80, fps=24)
    info = probe(str(tmp_path / "s.mp4"))
    cfg = CurateConfig(detector=detector, max_seconds=2.0)
    rows = split_source(str(tmp_path / "s.mp4"), "s", "s", info, cfg)
    kept = [r for r in rows if r["_kind"] == "clip"]
    assert len(kept) >= 4
    eps = 1e-6
    for r in kept:
        inside = [s for s in truth["shots"] if s["start_s"] - eps <= r["start_s"] < s["end_s"]]
        assert inside, r["start_s"]
        s = inside[0]
        assert s["kind"] != "black"
        assert r["end_s"] <= s["end_s"] + eps, (r["start_s"], r["end_s"], s)
        assert r["start_s"] >= s["start_s"] + s["fade_in"] - eps  # no fade-in frame
        assert r["end_s"] <= s["end_s"] - s["fade_out"] + eps  # no fade-out frame
    covered = {s["kind"] for r in kept for s in truth["shots"]
               if s["start_s"] - eps <= r["start_s"] < s["end_s"]}  # fmt: skip
    assert covered == {"shape", "pan", "zoom"}


def test_low_contrast_cut_between_plain_shots_is_found_with_the_demo_setting(tmp_path):
    """Two dim plain shots with one small object each (the demo's synthetic_028: a hard cut
    whose content change is ~14): AdaptiveDetector's default min_content_val of 15 merges the
    shots into one clip; the demo preset's adaptive_min_content (8) cuts them apart."""
    from common.config import load_stage_config

    shots = [
        Shot(kind="shape", seconds=2.5, color="yellow", shape="circle", direction="up",
             speed=0.35, background=346),
        Shot(kind="shape", seconds=2.5, color="white", shape="triangle", direction="down",
             speed=0.35, background=348),
    ]  # fmt: skip
    truth = write_video(tmp_path / "s.mp4", shots, width=96, height=96, fps=12)
    cut_s = truth["shots"][1]["start_s"]
    info = probe(str(tmp_path / "s.mp4"))

    def spans(cfg: CurateConfig) -> list[tuple[float, float]]:
        rows = split_source(str(tmp_path / "s.mp4"), "s", "s", info, cfg)
        return [(r["start_s"], r["end_s"]) for r in rows if r["_kind"] == "clip"]

    default = spans(CurateConfig())
    assert any(a < cut_s < b for a, b in default)  # one clip holds the cut
    demo = load_stage_config(CurateConfig, "curate", "demo", None, {})
    assert demo.adaptive_min_content == 8.0
    fixed = spans(demo)
    assert len(fixed) == 2 and fixed[0][1] <= cut_s + 1e-6 <= fixed[1][0]  # one per shot


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_rgb_detector_scores_equal_pyscenedetects(bikes_mp4, bunny_mp4, detector):
    """curate's detector computes PySceneDetect's frame score in one OpenCV pass: the same
    floats, frame by frame, and the same cuts as the stock detector fed the BGR frames."""
    import cv2
    import decord
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

    cfg = CurateConfig(detector=detector)
    for path, size in ((bikes_mp4, (228, 128)), (bikes_mp4, None), (bunny_mp4, (160, 90))):
        kw = {} if size is None else {"width": size[0], "height": size[1]}
        vr = decord.VideoReader(str(path), **kw)
        fps = vr.get_avg_fps()
        ours = make_detector(cfg, fps)
        min_len = max(1, int(round(cfg.detector_min_scene_seconds * fps)))
        stock = (
            ContentDetector(threshold=cfg.content_threshold, min_scene_len=min_len)
            if detector == "content"
            else AdaptiveDetector(adaptive_threshold=cfg.adaptive_threshold,
                                  min_scene_len=min_len, min_content_val=cfg.adaptive_min_content)
        )  # fmt: skip
        cuts: dict[str, list[int]] = {"ours": [], "stock": []}
        for i in range(len(vr)):
            rgb = vr[i].asnumpy()
            tc = FrameTimecode(i, fps=fps)
            cuts["ours"] += [c.frame_num for c in ours.process_frame(tc, rgb)]
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            cuts["stock"] += [c.frame_num for c in stock.process_frame(tc, bgr)]
            assert ours._frame_score == stock._frame_score, (path.name, size, i)
        last = FrameTimecode(len(vr) - 1, fps=fps)
        cuts["ours"] += [c.frame_num for c in ours.post_process(last) or []]
        cuts["stock"] += [c.frame_num for c in stock.post_process(last) or []]
        assert cuts["ours"] == cuts["stock"]
        if path == bikes_mp4:  # the comparison saw real cuts, not only still frames
            assert len(cuts["ours"]) >= 4, cuts
