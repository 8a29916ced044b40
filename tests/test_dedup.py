"""Near-duplicate removal with Ray Data banding: re-encoded copies, ranking, transitivity."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import pytest

from common.video import decode_mp4, encode_mp4
from curate.dedup import band_ranges, choose, find_duplicates
from curate.score_config import DedupConfig, ScoreConfig
from curate.scoring import score_frames
from curate.synthetic import Shot, render_shot
from schemas.tables import SCORES

SCHEMA = pa.schema(
    [pa.field("clip_id", pa.string()), pa.field("source_id", pa.string()),
     pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
     *[f for f in SCORES if f.name in ("phash", "aesthetic", "clip_embedding", "dominant_colors")]]
)  # fmt: skip


def dataset(ray, rows):
    return ray.data.from_arrow(pa.Table.from_pylist(rows, schema=SCHEMA))


def clip_hashes(frames: np.ndarray) -> list[int]:
    return score_frames(frames, 12.0, ScoreConfig(ocr=False))["phash"]


def test_reencoded_copy_is_a_duplicate_across_sources(ray_session):
    shots = [Shot(kind="pan", seconds=1.5, background=31), Shot(kind="zoom", seconds=1.5, background=32),
             Shot(kind="static", seconds=1.5, background=33), Shot(kind="pan", direction="up", seconds=1.5, background=34)]  # fmt: skip
    rows = []
    for i, shot in enumerate(shots):
        f = np.stack(list(render_shot(shot, 192, 112, 12.0)))
        rows.append({"clip_id": f"clip{i}", "source_id": "s1", "start_s": 0.0, "end_s": 1.5,
                     "phash": clip_hashes(decode_mp4(encode_mp4(f, 12.0, crf=18))), "aesthetic": 5.0})  # fmt: skip
    # the first clip again, from another source: smaller, heavily compressed, better aesthetic
    f = np.stack(list(render_shot(shots[0], 192, 112, 12.0)))
    small = np.stack([cv2.resize(x, (128, 74), interpolation=cv2.INTER_AREA) for x in f])
    copy = decode_mp4(encode_mp4(small, 12.0, crf=38))
    rows.append({"clip_id": "copy", "source_id": "s2", "start_s": 3.0, "end_s": 4.5,
                 "phash": clip_hashes(copy), "aesthetic": 6.0})  # fmt: skip
    drops = find_duplicates(dataset(ray_session, rows), DedupConfig(phash_radius=6))
    assert [(d["clip_id"], d["kept_clip_id"], d["reason"]) for d in drops] == [
        ("clip0", "copy", "near_duplicate")
    ]
    assert 0 <= drops[0]["value"] <= 6
    assert drops[0]["detail"] == f"phash distance {int(drops[0]['value'])} <= 6 to kept clip copy"
    assert find_duplicates(dataset(ray_session, rows), DedupConfig(enabled=False)) == []


def test_same_layout_in_other_colours_is_not_a_duplicate(ray_session):
    rows = []
    for cid, color in [("yellow", "yellow"), ("white", "white"), ("yellow2", "yellow")]:
        f = np.stack(
            list(
                render_shot(
                    Shot(kind="shape", color=color, seconds=1.5, background=5), 160, 96, 12.0
                )
            )
        )
        s = score_frames(f, 12.0, ScoreConfig(ocr=False))
        rows.append({"clip_id": cid, "start_s": 0.0, "end_s": 1.5, "phash": s["phash"],
                     "dominant_colors": s["dominant_colors"]})  # fmt: skip
    drops = find_duplicates(dataset(ray_session, rows), DedupConfig())
    assert [(d["clip_id"], d["kept_clip_id"]) for d in drops] == [("yellow2", "yellow")]
    off = find_duplicates(dataset(ray_session, rows), DedupConfig(color_jaccard=0.0))
    assert len(off) == 2  # luma layout alone: all three are the same shot


def test_pigeonhole_banding_finds_every_pair_within_radius(ray_session):
    rng = np.random.default_rng(1)
    radius, rows, expected = 5, [], set()
    for i in range(12):
        h = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
        d = radius if i % 2 == 0 else radius + 1  # exactly at the radius, or just outside
        flips = rng.choice(64, size=d, replace=False)
        g = h
        for b in flips:
            g ^= 1 << int(b)
        rows += [{"clip_id": f"a{i:02d}", "start_s": 0.0, "end_s": 2.0, "phash": [h]},
                 {"clip_id": f"b{i:02d}", "start_s": 0.0, "end_s": 1.0, "phash": [g]}]  # fmt: skip
        if d <= radius:
            expected.add((f"b{i:02d}", f"a{i:02d}"))  # a is longer: a is kept
    drops = find_duplicates(dataset(ray_session, rows), DedupConfig(phash_radius=radius))
    assert {(d["clip_id"], d["kept_clip_id"]) for d in drops} == expected
    assert sum(w for _, w in band_ranges(radius + 1)) == 64


def test_embedding_dedup(ray_session):
    rng = np.random.default_rng(2)
    base = rng.standard_normal(32).astype(np.float32)
    near = base + 0.05 * rng.standard_normal(32).astype(np.float32)
    other = rng.standard_normal(32).astype(np.float32)
    rows = [{"clip_id": cid, "start_s": 0.0, "end_s": 1.0, "aesthetic": aes,
             "phash": [int(rng.integers(0, 2**63))], "clip_embedding": (e / np.linalg.norm(e)).tolist()}
            for cid, aes, e in [("x", 4.0, base), ("y", 7.0, near), ("z", 9.0, other)]]  # fmt: skip
    cfg = DedupConfig(embedding=True, embedding_threshold=0.95)
    drops = find_duplicates(dataset(ray_session, rows), cfg)
    assert [(d["clip_id"], d["kept_clip_id"], d["reason"]) for d in drops] == [
        ("x", "y", "embedding_duplicate")
    ]
    assert drops[0]["value"] >= 0.95
    assert find_duplicates(dataset(ray_session, rows), DedupConfig(embedding=False)) == []


def _pair(a, b, aes_a=None, aes_b=None, dur_a=1.0, dur_b=1.0, reason="near_duplicate", value=2.0):
    return {"a": a, "b": b, "reason": reason, "value": value, "a_aesthetic": aes_a,
            "a_duration": dur_a, "b_aesthetic": aes_b, "b_duration": dur_b}  # fmt: skip


def test_representative_choice_is_deterministic():
    # highest aesthetic wins; null aesthetic ranks last
    d = choose([_pair("a", "b", aes_a=None, aes_b=3.0)])
    assert [(x["clip_id"], x["kept_clip_id"]) for x in d] == [("a", "b")]
    # equal aesthetic: longest; equal length: smallest id
    assert choose([_pair("a", "b", 5.0, 5.0, 1.0, 2.0)])[0]["kept_clip_id"] == "b"
    assert choose([_pair("b", "a", 5.0, 5.0)])[0]["kept_clip_id"] == "a"
    # a chain a~b~c (a not near c), ranked a > b > c: a kept, b dropped for a, c kept
    chain = [_pair("a", "b", 9.0, 5.0), _pair("b", "c", 5.0, 1.0)]
    assert [(x["clip_id"], x["kept_clip_id"]) for x in choose(chain)] == [("b", "a")]
    assert choose(list(reversed(chain))) == choose(chain)
    # a pair found by both methods is reported once, as the perceptual-hash duplicate
    both = [
        _pair("a", "b", 9.0, 5.0, reason="embedding_duplicate", value=0.99),
        _pair("a", "b", 9.0, 5.0),
    ]
    assert [x["reason"] for x in choose(both)] == ["near_duplicate"]


def test_config_validation():
    with pytest.raises(ValueError, match="pigeonhole"):
        DedupConfig(phash_radius=6, phash_bands=6)
    assert DedupConfig(phash_radius=6).bands == 7


def test_a_one_second_clip_is_compared_with_a_longer_copy(ray_session):
    """A 12-frame clip samples 2 frames at 2 fps, a 13-frame one 3: both carry phash_frames
    hashes (at the same relative times), so the copy is found (their hash counts differed and
    the pair was skipped)."""
    f = np.stack(list(render_shot(Shot(kind="static", seconds=2.0, background=31), 192, 112, 12.0)))
    rows = []
    for cid, n in (("a", 12), ("b", 13)):
        hashes = clip_hashes(f[:n])
        assert len(hashes) == ScoreConfig().phash_frames
        rows.append({"clip_id": cid, "source_id": cid, "start_s": 0.0, "end_s": n / 12,
                     "phash": hashes, "aesthetic": None})  # fmt: skip
    drops = find_duplicates(dataset(ray_session, rows), DedupConfig())
    assert [(d["clip_id"], d["kept_clip_id"]) for d in drops] == [("a", "b")]  # b is longer


def test_the_dedup_reads_the_staged_clips_in_few_tasks(ray_session, tmp_path):
    """One read task per dedup.files_per_read_task files (in the blocks Ray Data chose, four for
    a one-source run, a small run's dedup took twice as long); only the clip rows of the
    sources asked for come back."""
    import dataclasses

    import pyarrow.parquet as pq

    from curate.config import CurateConfig
    from curate.pipeline import staged_clips
    from curate.stages import to_staged

    files = []
    for s in range(5):
        rows = [{"_kind": "clip", "clip_id": f"c{s}{k}", "source_id": f"s{s}"} for k in range(2)]
        rows += [{"_kind": "source", "source_id": f"s{s}"},
                 {"_kind": "reject", "source_id": f"s{s}", "reason": "scene_too_short"}]  # fmt: skip
        pq.write_table(to_staged(rows), tmp_path / f"{s}.parquet")
        files.append(str(tmp_path / f"{s}.parquet"))
    cfg = CurateConfig()
    cfg = dataclasses.replace(cfg, dedup=dataclasses.replace(cfg.dedup, files_per_read_task=2))
    ds = staged_clips(files, {"s0", "s1", "s2", "s4"}, cfg).materialize()
    assert ds.num_blocks() == 3
    assert sorted(r["clip_id"] for r in ds.take_all()) == [
        "c00", "c01", "c10", "c11", "c20", "c21", "c40", "c41"
    ]  # fmt: skip
    assert staged_clips(files[:1], {"s0"}, CurateConfig()).materialize().num_blocks() == 1
