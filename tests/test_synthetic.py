"""The demo corpus's moving shapes: same crossing along either axis, always inside the frame."""

from __future__ import annotations

import itertools

import pytest

from curate.synthetic import MIN_TONE_STEP, Shot, demo_corpus, plain_tone, shape_path


def test_demo_shapes_cross_the_same_fraction_of_the_frame_on_either_axis(tmp_path):
    truth = demo_corpus(tmp_path, num_videos=3, seconds_per_shot=1.0, shape_speed=0.35)
    seen = set()
    for video in truth:
        w, h = video["width"], video["height"]
        for s in video["shots"]:
            if s["kind"] != "shape":
                continue
            shot = Shot(**{k: s[k] for k in Shot.__dataclass_fields__})
            path = shape_path(shot, s["end_frame"] - s["start_frame"], w, h)
            (x0, y0), (x1, y1) = path[0], path[-1]
            vertical = s["direction"] in ("up", "down")
            travel = abs(y1 - y0) / h if vertical else abs(x1 - x0) / w
            # 0.35 extents/s over 1 s, less one frame period
            assert travel == pytest.approx(0.35, rel=0.1), (s, travel)
            assert all(0 <= x <= w and 0 <= y <= h for x, y in path), s
            seen.add(s["direction"])
    assert seen == {"left", "right", "up", "down"}


def test_demo_corpus_balances_colours_over_directions(tmp_path):
    # 4 videos x 8 shape shots: each direction 8 times, so each colour once per direction
    truth = demo_corpus(
        tmp_path, num_videos=4, seconds_per_shot=0.5, sizes=((32, 32),), shape_shots=8
    )
    pairs = [
        (s["color"], s["direction"]) for v in truth for s in v["shots"] if s["kind"] == "shape"
    ]
    assert len(pairs) == 32
    assert len(set(pairs)) == 32
    # consecutive shape shots cut between clearly different background tones
    for v in truth:
        tones = [plain_tone(s["background"]) for s in v["shots"] if s["kind"] == "shape"]
        assert all(abs(a - b) >= MIN_TONE_STEP for a, b in itertools.pairwise(tones)), tones


def test_demo_corpus_writes_the_same_bytes_every_run(tmp_path):
    import hashlib

    from common.demo import DEMO_FPS, DEMO_SIZES

    def render(name):
        out = tmp_path / name
        demo_corpus(out, num_videos=6, seconds_per_shot=1.0, sizes=DEMO_SIZES, fps_choices=DEMO_FPS)
        return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.mp4"))}

    first = render("a")
    assert len(first) == 6
    for name in ("b", "c"):
        assert render(name) == first


def test_demo_corpus_fades_between_non_shape_shots_only(tmp_path):
    # curate drops faded frames: a faded shape shot would leave a clip shorter than the others
    truth = demo_corpus(tmp_path, num_videos=3, seconds_per_shot=0.5, sizes=((32, 32),))
    for v in truth:
        shots = v["shots"]
        assert [s["kind"] == "shape" for s in shots].count(True) == 4
        assert all(s["fade_in"] == s["fade_out"] == 0 for s in shots if s["kind"] == "shape")
        outs = [i for i, s in enumerate(shots) if s["fade_out"] > 0]
        ins = [i for i, s in enumerate(shots) if s["fade_in"] > 0]
        assert len(outs) == len(ins) == 1 and ins[0] == outs[0] + 1  # a fade-out, then a fade-in
        assert shots[outs[0]]["kind"] != shots[ins[0]]["kind"]
