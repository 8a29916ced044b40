"""Caption-aware augmentation: mirrored and time-reversed clips train on captions kept true."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from common.config import ConfigError
from train.augment import MIRROR, REVERSE, augment_frames, augmented_caption
from train.config import TrainConfig
from train.data import load_local_batch, plan_rows
from train.embeddings import write_embeddings
from train.index import pair_files, scan_pairs, unique_captions
from train.synthetic_pairs import make_synthetic_pairs

CAPTION = (
    "A red object moves to the left across a dim frame; the camera pans right. "
    "Dominant colours: gray, red."
)


def test_captions_swap_exactly_the_direction_words():
    assert augmented_caption(CAPTION, 0) == CAPTION
    assert augmented_caption(CAPTION, MIRROR) == (
        "A red object moves to the right across a dim frame; the camera pans left. "
        "Dominant colours: gray, red."
    )
    # Backwards, a leftward move is a rightward one; mirrored and backwards it is leftward again.
    assert augmented_caption(CAPTION, REVERSE) == augmented_caption(CAPTION, MIRROR)
    assert augmented_caption(CAPTION, MIRROR | REVERSE) == CAPTION
    vertical = "Up it goes: something moves upward; the camera zooms in. Leftover, upright paint."
    assert augmented_caption(vertical, MIRROR) == vertical  # no left or right word
    assert augmented_caption(vertical, REVERSE) == (
        "Down it goes: something moves downward; the camera zooms out. Leftover, upright paint."
    )
    assert augmented_caption("a red circle moving leftward", MIRROR) == (
        "a red circle moving rightward"
    )
    # hyphenated compounds are not direction words; capitals are kept
    close = "A close-up on the right-hand side; the camera pans LEFT."
    assert (
        augmented_caption(close, REVERSE)
        == "A close-up on the right-hand side; the camera pans RIGHT."
    )


def test_places_stay_put_when_played_backwards():
    """Backwards, a man standing on the left is still on the left (only moves turn around);
    mirrored, he is on the right."""
    caption = "A man on the left waves while a dog runs to the right; a sign at the top right."
    assert augmented_caption(caption, REVERSE) == (
        "A man on the left waves while a dog runs to the left; a sign at the top right."
    )
    assert augmented_caption(caption, MIRROR) == (
        "A man on the right waves while a dog runs to the left; a sign at the top left."
    )
    assert augmented_caption("In the lower left, a car drives up.", REVERSE) == (
        "In the lower left, a car drives down."
    )
    # a move from one side to the other turns around
    walk = "A woman walks from the left side of the frame to the right."
    assert augmented_caption(walk, REVERSE) == (
        "A woman walks from the right side of the frame to the left."
    )


def test_frames_are_mirrored_and_reversed():
    frames = np.arange(3 * 2 * 4 * 3, dtype=np.uint8).reshape(3, 2, 4, 3)  # (T, H, W, C)
    np.testing.assert_array_equal(augment_frames(frames, 0), frames)
    np.testing.assert_array_equal(augment_frames(frames, MIRROR), frames[:, :, ::-1])
    np.testing.assert_array_equal(augment_frames(frames, REVERSE), frames[::-1])
    both = augment_frames(frames, MIRROR | REVERSE)
    np.testing.assert_array_equal(both, frames[::-1, :, ::-1])
    assert both.flags["C_CONTIGUOUS"]


def test_bad_fractions_are_config_errors():
    for field in ("mirror_fraction", "reverse_fraction"):
        with pytest.raises(ConfigError, match=f"train.{field}"):
            TrainConfig(**{field: 1.5}).resolved()


def _cfg(**kw) -> TrainConfig:
    base = dict(num_frames=4, frame_stride=2, buckets=("32x32",), batch_size=4, seed=3)
    return TrainConfig(**(base | kw)).resolved()


def test_plan_draws_augmented_samples_with_their_own_captions(tmp_path):
    make_synthetic_pairs(tmp_path, n=16, sizes=((32, 32),), seconds=1.0, rows_per_file=16)
    files = pair_files([tmp_path])
    plain_index = scan_pairs(files)
    index = scan_pairs(files, variants=True)
    caps = unique_captions(index)
    assert set(unique_captions(plain_index)) < set(caps)  # the variants are embedded too
    emb = tmp_path / "emb.arrow"
    # fake embeddings whose value is the caption's index, so the lookup is checkable
    write_embeddings(emb, caps, [np.full((2, 8), i, np.float32) for i in range(len(caps))], 8, "x")

    aug_cfg = _cfg(mirror_fraction=0.5, reverse_fraction=0.5, image_fraction=0.2)
    plain = list(plan_rows(index, _cfg(image_fraction=0.2), 1, 0, 12))
    aug = list(plan_rows(index, aug_cfg, 1, 0, 12))
    # Augmentation draws on its own stream: the same clips and frames are planned.
    assert [(r["clip_ids"], r["frames"]) for r in aug] == [
        (r["clip_ids"], r["frames"]) for r in plain
    ]
    assert all(a == 0 for r in plain for a in r["augment"])
    codes = Counter(a for r in aug for a in r["augment"])
    assert set(codes) == {0, MIRROR, REVERSE, MIRROR | REVERSE}
    assert all(not a & REVERSE for r in aug if r["t"] == 1 for a in r["augment"])

    own = dict(zip(index["clip_id"].to_pylist(), index["caption"].to_pylist(), strict=True))
    checked = 0
    for p, r in zip(plain, aug, strict=True):
        for cid, a, ci in zip(r["clip_ids"], r["augment"], r["caption_idx"], strict=True):
            assert caps[ci] == augmented_caption(own[cid], a)
        if any(r["augment"]) and r["t"] > 1:
            got, ref = load_local_batch(r, str(emb)), load_local_batch(p, str(emb))
            for j, a in enumerate(r["augment"]):
                np.testing.assert_array_equal(got["video"][j], augment_frames(ref["video"][j], a))
                assert np.all(got["text"][j] == r["caption_idx"][j])
            checked += 1
    assert checked >= 3

    with pytest.raises(ValueError, match="variants=True"):
        list(plan_rows(plain_index, aug_cfg, 1, 0, 1))
