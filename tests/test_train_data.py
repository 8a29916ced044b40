"""Training data: bucketing, single-frame rows, deterministic plan, resume position, decode errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from train.config import TrainConfig
from train.data import (
    build_rank_dataset,
    epoch_batches,
    frame_indices,
    load_local_batch,
    make_plan_dataset,
    nearest_bucket,
    plan_rows,
    unpack_batch,
)
from train.embeddings import (
    embed_captions,
    lookup_text,
    read_embeddings,
    token_covariance,
    token_stats,
    write_embeddings,
)
from train.index import pair_files, scan_pairs, unique_captions
from train.synthetic_pairs import make_synthetic_pairs

SIZES = ((48, 32), (32, 32), (32, 48))  # (width, height): one per bucket


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    make_synthetic_pairs(out, n=24, sizes=SIZES, seconds=1.0, fps=12.0, rows_per_file=10)
    index = scan_pairs(pair_files([out]))
    caps = unique_captions(index)
    emb = out / "emb.arrow"
    # Distinct fake embeddings per caption (lengths 2..4), so the lookup is checkable.
    write_embeddings(
        emb, caps, [np.full((2 + i % 3, 8), i, np.float32) for i in range(len(caps))], 8, "fake"
    )
    return out, index, str(emb)


def _cfg(**kw) -> TrainConfig:
    base = dict(
        num_frames=4,
        frame_stride=2,
        buckets=("48x32", "32x32", "32x48"),
        batch_size=2,
        image_fraction=0.3,
        seed=1,
    )
    base.update(kw)
    return TrainConfig(**base).resolved()


def test_nearest_bucket_and_frame_indices():
    sizes = [(32, 48), (32, 32), (48, 32)]  # (h, w)
    assert nearest_bucket(1920, 1080, sizes) == (32, 48)
    assert nearest_bucket(100, 98, sizes) == (32, 32)
    assert nearest_bucket(720, 1280, sizes) == (48, 32)
    assert frame_indices(12, 4, 2, 0.0) == [0, 2, 4, 6]
    assert frame_indices(12, 4, 2, 0.999) == [5, 7, 9, 11]
    assert frame_indices(7, 4, 3, 0.5) == [0, 2, 4, 6]  # stride shrinks to fit a short clip
    assert frame_indices(3, 4, 2, 0.5) is None  # too short for a video row
    assert frame_indices(10, 1, 2, 0.55) == [5]


def test_buckets_one_shape_per_batch_with_single_frame_rows(pairs):
    _, index, emb = pairs
    cfg = _cfg()
    rows = list(plan_rows(index, cfg, workers=2, start_mb=0, end_mb=12))
    assert len(rows) == 24 and Counter(r["mb"] for r in rows) == {m: 2 for m in range(12)}
    ts = {r["t"] for r in rows}
    assert ts == {1, 4}, "both video rows and single-frame (image) rows are planned"
    wh = list(zip(index["width"].to_pylist(), index["height"].to_pylist(), strict=True))
    by_id = dict(zip(index["clip_id"].to_pylist(), wh, strict=True))
    for r in rows[:8]:
        out = load_local_batch(r, emb)
        v = out["video"]
        assert v.shape == (2, r["t"], r["h"], r["w"], 3) and v.dtype == np.uint8
        # Each video clip went to the bucket of its own aspect ratio (sizes equal the buckets
        # here; the few single-frame rows of a size join a bucket that fills a batch).
        for cid in r["clip_ids"] if r["t"] > 1 else []:
            assert by_id[cid] == (r["w"], r["h"])
        assert out["text"].shape[0] == 2 and out["mask"].shape == out["text"].shape[:2]
        # The embedding rows are the captions' own (value = caption index).
        for j, ci in enumerate(r["caption_idx"]):
            n = int(out["mask"][j].sum())
            assert n == 2 + ci % 3 and np.all(out["text"][j, :n] == ci)
        assert json.loads(out["errors"]) == []
    assert {(r["w"], r["h"]) for r in rows} == set(SIZES)


def test_plan_is_deterministic_and_seeded(pairs):
    _, index, _ = pairs
    a = list(plan_rows(index, _cfg(), 2, 0, 10))
    b = list(plan_rows(index, _cfg(), 2, 0, 10))
    c = list(plan_rows(index, _cfg(seed=2), 2, 0, 10))
    assert a == b
    assert [r["clip_ids"] for r in a] != [r["clip_ids"] for r in c]
    # Epochs reshuffle: the first batch of epoch 0 and of epoch 1 differ.
    e0, _ = epoch_batches(index, _cfg(), 0, 2)
    e1, _ = epoch_batches(index, _cfg(), 1, 2)
    assert [x.rows for x in e0] != [x.rows for x in e1]
    # Every batch of every epoch has a single shape and batch_size * workers samples.
    for batch in e0 + e1:
        assert len(batch.rows) == 4 and all(len(f) == batch.shape[0] for f in batch.frames)


def test_resume_position_gives_the_same_next_batch(ray_session, pairs):
    _, index, emb = pairs
    cfg = _cfg()
    full = list(plan_rows(index, cfg, 2, 0, 9))
    resumed = list(plan_rows(index, cfg, 2, 6, 9))
    assert resumed == full[12:]

    # Through Ray Data: rank 1's pipeline started at micro-batch 6 yields the batch an
    # uninterrupted pipeline yields at micro-batch 6 (same content hash), in order.
    def hashes(rows):
        ds = build_rank_dataset(make_plan_dataset(rows), 1, emb, 0.5)
        return [(b["mb"], b["hash"]) for b in map(unpack_batch, ds.iter_batches(batch_size=1))]

    uninterrupted = hashes(full)
    assert [m for m, _ in uninterrupted] == list(range(9))
    assert hashes(resumed) == uninterrupted[6:]


def test_unreadable_clip_is_replaced_and_named(tmp_path, pairs):
    out, index, emb = pairs
    bad = tmp_path / "bad"
    make_synthetic_pairs(bad, n=4, sizes=((32, 32),), rows_per_file=4)
    [f] = pair_files([bad])
    tbl = pq.read_table(f)
    videos = tbl.column("video").to_pylist()
    videos[1] = b"not a video"
    tbl = tbl.set_column(
        tbl.schema.get_field_index("video"), "video", pa.array(videos, pa.binary())
    )
    pq.write_table(tbl, f)
    idx = scan_pairs([f])
    caps = unique_captions(idx)
    # each caption's embedding holds its index, so the text of every sample is checkable
    embs = [np.full((2, 8), i, np.float32) for i in range(len(caps))]
    write_embeddings(tmp_path / "e.arrow", caps, embs, 8, "x")
    cfg = _cfg(image_fraction=0.0, buckets=("32x32",), batch_size=4)
    [row] = list(plan_rows(idx, cfg, 1, 0, 1))
    res = load_local_batch(row, str(tmp_path / "e.arrow"))
    errors = json.loads(res["errors"])
    assert [e["reason"] for e in errors] == ["decode_failed"]
    bad_id = tbl.column("clip_id")[1].as_py()
    assert errors[0]["clip_id"] == bad_id
    assert res["video"].shape == (4, 4, 32, 32, 3)
    # the stand-in clip trains with its own caption, not the failed clip's
    caption_of = dict(zip(idx["clip_id"].to_pylist(), idx["caption_idx"].to_pylist(), strict=True))
    used = res["clip_ids"].split("|")
    assert bad_id not in used
    assert [int(res["text"][j, 0, 0]) for j in range(4)] == [caption_of[c] for c in used]


def test_tiny_dataset_spread_over_buckets_still_forms_batches(pairs):
    """6 clips over 3 aspect-ratio buckets with batch_size*workers = 4: no bucket can fill a
    batch alone, so the rows join the fullest bucket instead of training on nothing."""
    _, index, _ = pairs
    wh = list(zip(index["width"].to_pylist(), index["height"].to_pylist(), strict=True))
    take = [i for i, x in enumerate(wh) if wh[: i + 1].count(x) <= 2]  # 2 clips per size
    small = index.take(take)
    assert len(take) == 6 and len(set(wh)) == 3
    cfg = _cfg(image_fraction=0.0, batch_size=4)
    batches, counts = epoch_batches(small, cfg, 0, 1)
    assert len(batches) == 1 and len(batches[0].rows) == 4
    assert counts["merged_buckets"] >= 1 and counts["left_for_next_epoch"] == 2
    # The normal case is untouched: with enough rows each clip keeps its own bucket.
    _, full_counts = epoch_batches(index, _cfg(image_fraction=0.0), 0, 2)
    assert "merged_buckets" not in full_counts


def test_a_bucket_too_small_for_a_batch_is_not_left_out_every_epoch(pairs):
    """21 square clips and 3 wide ones, batches of 4: the wide bucket never fills one, so its
    clips join the nearest bucket that does (they were never trained)."""
    _, index, _ = pairs
    wh = list(zip(index["width"].to_pylist(), index["height"].to_pylist(), strict=True))
    square = [i for i, x in enumerate(wh) if x == (32, 32)]
    wide = [i for i, x in enumerate(wh) if x == (48, 32)][:3]
    tbl = index.take(square + wide)
    cfg = _cfg(image_fraction=0.0, batch_size=4, buckets=("32x32", "48x32"))
    wide_ids = {tbl["clip_id"][i].as_py() for i in range(len(square), tbl.num_rows)}
    drawn = Counter()
    for epoch in range(6):
        batches, counts = epoch_batches(tbl, cfg, epoch, 1)
        assert counts["merged_buckets"] == 1
        drawn.update(tbl["clip_id"][i].as_py() for b in batches for i in b.rows)
    assert all(drawn[c] > 0 for c in wide_ids)


def test_an_epoch_without_a_batch_is_skipped_not_fatal(pairs):
    """6 clips, half drawn as single frames: some epochs split into a video and an image group
    of 3 each, too small for a batch of 4; planning goes on to the next epoch."""
    _, index, _ = pairs
    small = index.take(list(range(6)))
    cfg = _cfg(image_fraction=0.5, batch_size=4, buckets=("32x32",), seed=0)
    empty = [e for e in range(10) if not epoch_batches(small, cfg, e, 1)[0]]
    assert empty, "the premise: some epoch forms no batch"
    rows = list(plan_rows(small, cfg, workers=1, start_mb=0, end_mb=30))
    assert [r["mb"] for r in rows] == list(range(30))
    assert not {r["epoch"] for r in rows} & set(e for e in empty if e < rows[-1]["epoch"])


def test_train_config_rejects_bad_values_naming_the_field():
    from common.config import ConfigError

    for field, value in (
        ("torch_threads", -1),
        ("image_fraction", 1.5),
        ("strategy", "zero"),
        ("lr_decay", "step"),
        ("lr_final", 2.0),
        ("lr_decay_start", 1.0),
        ("max_minutes", -1.0),
    ):
        with pytest.raises(ConfigError, match=f"train.{field}"):
            _cfg(**{field: value})
    assert _cfg(torch_threads=2).torch_threads == 2
    # Shapes the model cannot cut into patches: refused up front, not at the first batch.
    from train.model import ModelConfig

    with pytest.raises(ConfigError, match="train.image_fraction must be 0 with model.patch_t=2"):
        _cfg(model=ModelConfig(patch_t=2))
    with pytest.raises(
        ConfigError, match="train.num_frames=4 is not a multiple of model.patch_t=3"
    ):
        _cfg(model=ModelConfig(patch_t=3), image_fraction=0.0)
    with pytest.raises(ConfigError, match="train.buckets: 34x32 is not a multiple of .* 4x4"):
        _cfg(buckets=("32x32", "34x32"))


def test_clips_too_short_for_a_temporal_patch_are_skipped_not_single_frames(pairs):
    """The clips (12 frames) are shorter than num_frames=16: with patch_t 1 they become
    single-frame samples; with patch_t 2 a single frame has no patch, so they are skipped."""
    from train.model import ModelConfig

    _, index, _ = pairs
    _, counts = epoch_batches(index, _cfg(image_fraction=0.0, num_frames=16), 0, workers=1)
    assert counts["too_short_as_image"] == counts["image"] == index.num_rows
    cfg = _cfg(image_fraction=0.0, num_frames=16, model=ModelConfig(patch_t=2))
    batches, counts = epoch_batches(index, cfg, 0, workers=1)
    assert batches == [] and counts["too_short_skipped"] == index.num_rows
    assert counts["image"] == counts["video"] == counts["left_for_next_epoch"] == 0


def test_caption_embeddings_are_reused_only_for_the_same_text_settings(ray_session, tmp_path):
    """A rerun reuses the run's embedding table; another layer or length re-embeds."""
    from train.text import TextConfig

    path = tmp_path / "embeddings.arrow"
    caps = ["a red circle moving left", "a red circle moving right"]
    last, first = TextConfig(), TextConfig(layer=0)
    assert embed_captions(caps, last, path) == 384
    stamp = path.stat().st_mtime_ns
    assert embed_captions(caps, last, path) == 384
    assert path.stat().st_mtime_ns == stamp  # reused
    ref_last, _ = lookup_text(path, [0, 1])
    embed_captions(caps, first, path)
    assert path.stat().st_mtime_ns != stamp  # layer 0 is not layer -1: embedded again
    ref_first, _ = lookup_text(path, [0, 1])
    assert not np.allclose(ref_first, ref_last)
    stamp = path.stat().st_mtime_ns
    embed_captions(caps, TextConfig(layer=0, max_length=4), path)
    assert path.stat().st_mtime_ns != stamp
    assert read_embeddings(path)[0].schema.metadata[b"text"] == b"minilm max_length=4 layer=0"


def test_embeddings_rewritten_by_another_process_are_read_anew(tmp_path):
    """A process's cached table is dropped when the file changes under it: Ray reuses worker
    processes across runs, and a later run's driver rewrites RUN/text/embeddings.arrow."""
    import subprocess
    import sys

    path = tmp_path / "emb.arrow"
    write_embeddings(path, ["a", "b"], [np.full((2, 4), 1.0), np.full((1, 4), 2.0)], 4, "t")
    assert read_embeddings(path)[0].column("caption").to_pylist() == ["a", "b"]
    code = (
        "import numpy as np; from train.embeddings import write_embeddings; "
        f"write_embeddings({str(path)!r}, ['c', 'd', 'e'], [np.full((1, 8), 3.0)] * 3, 8, 't')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
    tbl, dim = read_embeddings(path)
    assert tbl.column("caption").to_pylist() == ["c", "d", "e"] and dim == 8


def test_token_stats_are_the_mean_and_std_of_every_token(ray_session, tmp_path):
    from train.text import TextConfig

    caps = ["a red circle moving left", "blue", "a much longer caption with several tokens"]
    path = tmp_path / "emb.arrow"
    embed_captions(caps, TextConfig(max_length=16), path)
    text, mask = lookup_text(path, [0, 2])
    tokens = text[mask].astype(np.float64)  # (N, D): captions 0 and 2 only
    mean, std = token_stats(path, [0, 2])
    np.testing.assert_allclose(mean, tokens.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, tokens.std(0, ddof=1), rtol=1e-4, atol=1e-6)
    # over the limit: evenly spaced captions (here the first and the last)
    np.testing.assert_allclose(token_stats(path, [0, 1, 2], limit=2)[0], mean, rtol=1e-5, atol=1e-6)
    # and their covariance (model.text_whiten), over the same captions
    cov_mean, cov_std, cov = token_covariance(path, [0, 2])
    np.testing.assert_allclose(cov, np.cov(tokens.T), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(cov_mean, mean)
    np.testing.assert_array_equal(cov_std, std)
    np.testing.assert_allclose(token_covariance(path, [0, 1, 2], limit=2)[2], cov, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 caption tokens"):
        token_covariance(path, [])


def test_where_keeps_only_matching_pairs_and_the_plan_uses_them(pairs):
    """``train.where`` conditions select rows as pyarrow's filter over the read table does,
    null values never match, and the plan draws only the kept clips."""
    out, index, _ = pairs
    files = pair_files([out])
    full = pa.concat_tables([pq.read_table(f) for f in files])
    where = (("motion_direction", "in", ["left", "up"]), ("width", "<", 48))
    want = {
        r["clip_id"]
        for r in full.select(["clip_id", "motion_direction", "width"]).to_pylist()
        if r["motion_direction"] in ("left", "up") and r["width"] < 48
    }
    assert 0 < len(want) < full.num_rows
    kept = scan_pairs(files, where)
    assert set(kept.column("clip_id").to_pylist()) == want
    assert kept.num_rows == len(want)
    assert kept.column_names == index.column_names  # the condition columns are not kept
    from train.index import pairs_total

    assert pairs_total(kept) == pairs_total(index) == full.num_rows == index.num_rows
    # caption_idx indexes the kept captions only
    caps = unique_captions(kept)
    assert [caps[i] for i in kept.column("caption_idx").to_pylist()] == kept.column(
        "caption"
    ).to_pylist()
    cfg = _cfg(image_fraction=0.0, buckets=("32x32",), batch_size=1)
    planned = {c for row in plan_rows(kept, cfg, 1, 0, 8) for c in row["clip_ids"]}
    assert planned and planned <= want
    # a null never matches: the synthetic pairs carry no camera_motion
    with pytest.raises(ValueError, match="keeps none of the 24 pairs"):
        scan_pairs(files, (("camera_motion", "!=", "zoom_in"),))
    # a value of the wrong type names the column's type
    with pytest.raises(ValueError, match="does not apply to the columns \\(width: int32\\)"):
        scan_pairs(files, (("width", "==", "wide"),))


@pytest.mark.parametrize(
    "where, message",
    [
        ((("motion_dir", "==", "left"),), "'motion_dir' is not a scalar pairs column"),
        ((("video", "==", "x"),), "'video' is not a scalar pairs column"),
        ((("dominant_colors", "==", "red"),), "'dominant_colors' is not a scalar pairs column"),
        ((("motion", "~", 1),), "operator '~' is not one of"),
        ((("motion_direction", "in", "left"),), "'in' needs a list of values"),
        ((("motion", ">=", [1, 2]),), "'>=' needs one value"),
        ((("motion", ">="),), r"train.where\[0\]: expected \[column, op, value\]"),
    ],
)
def test_bad_where_is_a_config_error_naming_the_condition(where, message):
    from common.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        TrainConfig(where=where).resolved()


def test_activation_checkpointing_from_either_field():
    """train.activation_checkpointing and model.checkpoint_activations both turn it on (the
    model field was overwritten by the train one and did nothing)."""
    from train.model import ModelConfig

    assert _cfg(activation_checkpointing=True).model.checkpoint_activations
    assert _cfg(model=ModelConfig(checkpoint_activations=True)).model.checkpoint_activations
    assert not _cfg().model.checkpoint_activations
