"""The text-faithfulness benchmark's own logic: the held-out split, the mapping of curated
clips back to generator shots, the pair shards it writes, and its accuracy table."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.synthetic import COLORS, DIRECTIONS, Shot, plain_tone
from schemas.validate import rows_to_table, write_table

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "text_faithfulness.py"
_spec = importlib.util.spec_from_file_location("text_faithfulness", _PATH)
tf = importlib.util.module_from_spec(_spec)
sys.modules["text_faithfulness"] = tf
_spec.loader.exec_module(tf)
import faithfulness_scores as fs  # noqa: E402 - on sys.path once text_faithfulness is loaded


def test_split_holds_combos_out_but_keeps_their_colours_and_directions():
    train, held = tf.split_combos(2)
    assert len(held) == 2 * len(COLORS) and len(train) + len(held) == len(COLORS) * 3 * 4
    assert not set(train) & set(held)
    for c, s, d in held:
        assert any(t[0] == c for t in train) and any(t[2] == d for t in train)
        # the colour x direction pair is still trained, with another shape
        assert any(t[0] == c and t[2] == d and t[1] != s for t in train)
    assert {d for _, _, d in held} == set(DIRECTIONS)


def test_check_split_rejects_leaks_and_unseen_attributes():
    with pytest.raises(ValueError, match="held-out combos in training"):
        tf.check_split([("red", "circle", "left")], [("red", "circle", "left")])
    with pytest.raises(ValueError, match="never seen"):
        tf.check_split([("red", "circle", "left")], [("blue", "circle", "left")])


def _tiny_corpus(tmp_path: Path) -> list[dict]:
    mode = tf.Mode(
        size=32,
        fps=8.0,
        seconds=1.0,
        shots_per_video=3,
        repeats=1,
        heldout_repeats=1,
        heldout_per_color=1,
        seen_prompts=1,
        seeds=1,
    )
    combos = [("red", "circle", "left"), ("blue", "square", "up"),
              ("green", "triangle", "right"), ("white", "circle", "down")]  # fmt: skip
    shots = [Shot(kind="shape", seconds=1.0, color=c, shape=s, direction=d) for c, s, d in combos]
    return tf.write_corpus(tmp_path / "footage", shots, mode, seed=0)


def test_match_shot_assigns_each_clip_its_own_shot(tmp_path):
    truth = _tiny_corpus(tmp_path)
    assert [len(v["shots"]) for v in truth] == [3, 1]
    v0 = truth[0]["path"]
    # a clip trimmed by 2 frames at each cut (what curate cuts) falls inside its shot
    assert tf.match_shot(truth, v0, 0.25, 0.75)["color"] == "red"
    assert tf.match_shot(truth, v0, 1.25, 1.75)["color"] == "blue"
    assert tf.match_shot(truth, v0, 2.0, 3.0)["color"] == "green"
    assert tf.match_shot(truth, truth[1]["path"], 0.1, 0.9)["color"] == "white"
    # a missed cut: the clip spans two shots, so it gets no caption
    assert tf.match_shot(truth, v0, 0.5, 1.5) is None
    assert tf.match_shot(truth, str(tmp_path / "other.mp4"), 0.25, 0.75) is None
    # consecutive backgrounds differ so the cut is visible
    tones = [plain_tone(s["background"]) for s in truth[0]["shots"]]
    assert all(abs(a - b) >= 15 for a, b in zip(tones, tones[1:], strict=False))


def test_make_pairs_captions_from_truth_and_keeps_held_out_out_of_training(tmp_path):
    truth = _tiny_corpus(tmp_path)
    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    spans = [
        (truth[0]["path"], 0.25, 0.75),
        (truth[0]["path"], 1.25, 1.75),
        (truth[0]["path"], 2.25, 2.75),
        (truth[1]["path"], 0.25, 0.75),
        (truth[0]["path"], 0.5, 1.5),
    ]
    rows = [
        {
            "clip_id": f"c{i}",
            "source_id": "s",
            "source_path": p,
            "start_s": a,
            "end_s": b,
            "fps": 8.0,
            "num_frames": 4,
            "width": 32,
            "height": 32,
            "video": b"x",
        }
        for i, (p, a, b) in enumerate(spans)
    ]
    write_table(rows_to_table(rows, "clips"), str(data / "clips" / "part-0.parquet"), "clips")
    held = [("blue", "square", "up")]
    counts = tf.make_pairs(data, tmp_path / "heldout", truth, held)
    assert counts == {"clips": 5, "unmatched": 1, "seen": 3, "heldout": 1}
    seen = pq.read_table(data / "pairs").to_pydict()
    assert dict(zip(seen["clip_id"], seen["caption"], strict=True)) == {
        "c0": "a red circle moving left",
        "c2": "a green triangle moving right",
        "c3": "a white circle moving down",
    }
    assert set(seen["caption_source"]) == {tf.CAPTION_SOURCE}
    ho = pq.read_table(tmp_path / "heldout" / "pairs").to_pydict()
    assert ho["clip_id"] == ["c1"] and ho["caption"] == ["a blue square moving up"]


def test_summarize_counts_colour_direction_both_and_presence():
    def row(c, d, rc, rd, p):
        return {"color": c, "direction": d, "read_color": rc, "read_direction": rd, "presence": p}

    rows = [
        row("red", "left", "red", "left", 1.0),
        row("red", "left", "red", "up", 1.0),
        row("blue", "up", "green", "up", 0.5),
        row("blue", "up", None, None, 0.0),
    ]
    assert fs.summarize([row("red", "left", "red", "right", 1.0)])["axis"] == 1.0
    s = fs.summarize(rows)
    assert s["n"] == 4
    assert s["color"] == 0.5 and s["direction"] == 0.5 and s["both"] == 0.25
    assert s["axis"] == 0.5  # "up" for "left" and no reading are off-axis
    assert s["presence"] == 0.625
    assert math.isnan(fs.summarize([])["both"])
    ch = fs.chance()
    assert ch["color"] == 1 / 8 and ch["direction"] == 1 / 4 and ch["both"] == 1 / 32
    res = {
        "mode": "cpu",
        "train_steps": 1,
        "train_s": 1.0,
        "wall_s": 2.0,
        "pairs": {"seen": 3, "heldout": 1},
        "chance": ch,
        "seen": s,
        "heldout": s,
        "loss_by_t": {
            "seen": {
                "true": {"0.0-0.2": 0.5},
                "wrong_direction": {"0.0-0.2": 0.55},
                "opposite_direction": {"0.0-0.2": 0.5},
            },
            "heldout": {"true": {"0.0-0.2": 0.7}},
        },
        "pass": False,
    }
    table = tf.format_table(res)
    assert "| both accuracy | 25.0% | 25.0% | 3.1% |" in table
    assert "| flow loss t=0.0-0.2 | 0.5000 | 0.7000 |" in table and "FAIL" in table
    assert "| loss change, wrong direction word, t=0.0-0.2 | +10.0% | n/a |" in table
    assert "| loss change, opposite direction word, t=0.0-0.2 | +0.0% | n/a |" in table
    assert "| direction axis accuracy (sign ignored) | 50.0% | 50.0% | 50.0% |" in table


def test_swap_attribute_changes_only_that_word():
    cap = "a red circle moving left"
    assert fs.opposite_direction(cap) == "a red circle moving right"
    assert fs.opposite_direction("a blue square moving down") == "a blue square moving up"
    swapped = {fs.swap_attribute(cap, "direction", k) for k in range(3)}
    assert swapped == {f"a red circle moving {d}" for d in ("right", "up", "down")}
    colours = {fs.swap_attribute(cap, "color", k) for k in range(7)}
    assert len(colours) == 7 and all(c.endswith(" circle moving left") for c in colours)
    assert cap not in colours


def test_oracle_reads_the_benchmarks_training_clips_back():
    """The judge on what the model is trained to make: every combination at the benchmark's
    slowest and fastest speeds, rendered at the source size, cut to the training window
    (the mode's frames and stride), resized to 32x32 and passed through H.264."""
    import numpy as np

    from common.video import decode_mp4, encode_mp4
    from curate.oracle import read_clip
    from curate.synthetic import render_shot
    from train.data import frame_indices, resize_crop

    train, held = tf.split_combos(2)
    mode = tf.MODES["cpu"]
    right = total = 0
    for k, (c, s, d) in enumerate(train + held):
        shot = Shot(kind="shape", seconds=mode.seconds, color=c, shape=s, direction=d,
                    speed=mode.speed[k % 2], background=500 + k)  # fmt: skip
        frames = np.stack(list(render_shot(shot, mode.size, mode.size, mode.fps)))
        idx = frame_indices(len(frames), mode.num_frames, mode.frame_stride, (k % 5) / 5)
        fps = mode.fps / mode.frame_stride
        clip = decode_mp4(encode_mp4(resize_crop(frames[idx], 32, 32), fps, crf=18))
        r = read_clip(clip)
        total += 1
        right += r.color == c and r.direction == d and r.presence >= 0.99
    assert right / total >= 0.99, f"oracle read {right}/{total} training clips correctly"
