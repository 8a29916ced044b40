"""train.short_caption_fraction: a share of samples trains on the pair's one-sentence caption."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.config import ConfigError
from schemas.validate import write_table
from train.augment import MIRROR, augmented_caption
from train.config import TrainConfig
from train.data import load_local_batch, plan_rows
from train.embeddings import write_embeddings
from train.index import pair_files, scan_pairs, unique_captions
from train.synthetic_pairs import make_synthetic_pairs


def _cfg(**kw) -> TrainConfig:
    base = dict(num_frames=4, frame_stride=2, buckets=("32x32",), batch_size=4, seed=3)
    return TrainConfig(**(base | kw)).resolved()


@pytest.fixture
def pairs(tmp_path):
    """16 synthetic pairs whose short caption differs from the dense one; two have none."""
    (f,) = make_synthetic_pairs(tmp_path, n=16, sizes=((32, 32),), seconds=1.0, rows_per_file=16)
    t = pq.read_table(f)
    dense = [f"{c}. The motion is moderate. Dim scene." for c in t["caption"].to_pylist()]
    short = [None if i in (3, 7) else c for i, c in enumerate(t["caption"].to_pylist())]
    t = t.set_column(t.schema.get_field_index("caption"), "caption", pa.array(dense))
    i = t.schema.get_field_index("caption_short")
    t = t.set_column(i, "caption_short", pa.array(short, pa.string()))
    write_table(t, str(f), "pairs")
    return pair_files([tmp_path])


def test_fraction_is_validated():
    with pytest.raises(ConfigError, match="train.short_caption_fraction"):
        TrainConfig(short_caption_fraction=-0.1).resolved()


def test_plan_draws_short_captions_on_their_own_stream(pairs, tmp_path):
    index = scan_pairs(pairs, short=True)
    caps = unique_captions(index)
    plain_caps = unique_captions(scan_pairs(pairs))
    dense = dict(zip(index["clip_id"].to_pylist(), index["caption"].to_pylist(), strict=True))
    short = dict(zip(index["clip_id"].to_pylist(), index["caption_short"].to_pylist(), strict=True))
    # A pair without a short caption keeps its dense one; the others are embedded too.
    assert sum(short[c] == dense[c] for c in short) == 2
    assert set(caps) == set(plain_caps) | set(short.values())
    assert len(set(short.values()) - set(plain_caps)) >= 10

    mixed = list(plan_rows(index, _cfg(short_caption_fraction=0.5), 1, 0, 16))
    plain = list(plan_rows(index, _cfg(), 1, 0, 16))
    # The same clips and frames are planned with and without short captions.
    assert [(r["clip_ids"], r["frames"]) for r in mixed] == [
        (r["clip_ids"], r["frames"]) for r in plain
    ]
    flags = [s for r in mixed for s in r["short"]]
    assert 0.3 < np.mean(flags) < 0.7
    for r in mixed:
        for cid, s, ci in zip(r["clip_ids"], r["short"], r["caption_idx"], strict=True):
            assert caps[ci] == (short[cid] if s else dense[cid])
    only = list(plan_rows(index, _cfg(short_caption_fraction=1.0), 1, 0, 4))
    assert all(
        caps[ci] == short[c]
        for r in only
        for c, ci in zip(r["clip_ids"], r["caption_idx"], strict=True)
    )

    # The batch carries the embedding of the caption it was planned with.
    emb = tmp_path / "emb.arrow"
    write_embeddings(emb, caps, [np.full((2, 8), i, np.float32) for i in range(len(caps))], 8, "x")
    got = load_local_batch(mixed[0], str(emb))
    for j, ci in enumerate(mixed[0]["caption_idx"]):
        assert np.all(got["text"][j] == ci)

    with pytest.raises(ValueError, match="short=True"):
        list(plan_rows(scan_pairs(pairs), _cfg(short_caption_fraction=0.5), 1, 0, 1))


def test_short_captions_are_mirrored_with_the_clip(pairs):
    index = scan_pairs(pairs, variants=True, short=True)
    caps = unique_captions(index)
    dense = dict(zip(index["clip_id"].to_pylist(), index["caption"].to_pylist(), strict=True))
    short = dict(zip(index["clip_id"].to_pylist(), index["caption_short"].to_pylist(), strict=True))
    cfg = _cfg(short_caption_fraction=0.5, mirror_fraction=0.5)
    seen = set()
    for r in plan_rows(index, cfg, 1, 0, 16):
        for cid, a, s, ci in zip(
            r["clip_ids"], r["augment"], r["short"], r["caption_idx"], strict=True
        ):
            assert caps[ci] == augmented_caption(short[cid] if s else dense[cid], a)
            seen.add((bool(a & MIRROR), s))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_pairs_without_the_column_are_named(tmp_path):
    (f,) = make_synthetic_pairs(tmp_path, n=4, sizes=((32, 32),), seconds=1.0, rows_per_file=4)
    t = pq.read_table(f).drop_columns(["caption_short"])
    bare = tmp_path / "bare.parquet"
    pq.write_table(t, bare)
    with pytest.raises(ValueError, match="needs a caption_short column"):
        scan_pairs([str(bare)], short=True)
