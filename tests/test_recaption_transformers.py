"""The transformers back end with a tiny random Qwen2-VL saved to disk and loaded with
from_pretrained (the real path); captions are gibberish, so tests check rows, not quality."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.synthetic import Shot
from recaption.backend_transformers import TransformersBackend, check_weights
from recaption.base import CaptionRequest, WeightsMissing
from recaption.config import RecaptionConfig
from recaption.pipeline import run_recaption
from recaption.qa import REASONS
from recaption.testing import tiny_model_dir, write_clips


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny-vlm"))


def _cfg(model, **kw):
    base = {"backend": "transformers", "model": model, "num_frames": 2, "max_new_tokens": 12,
            "batch_size": 2, "min_words": 1}  # fmt: skip
    return RecaptionConfig(**{**base, **kw})


def _req(i, h=64, w=96):
    frames = np.random.default_rng(i).integers(0, 255, (2, h, w, 3), dtype=np.uint8)
    return CaptionRequest(f"clip{i}", frames, {"start_s": 0.0, "end_s": 1.0})


@pytest.mark.parametrize("video_input", [False, True])
def test_batched_generate(tiny_vlm, monkeypatch, video_input):
    be = TransformersBackend(_cfg(tiny_vlm, video_input=video_input))
    assert be.source == tiny_vlm and be.revision.startswith("local:") and be.prompt_version == "v1"
    calls = []
    real = be._generate
    monkeypatch.setattr(
        be, "_generate", lambda reqs, kind: calls.append(len(reqs)) or real(reqs, kind)
    )
    res = be.caption([_req(0), _req(1, 48, 80), _req(2)])
    assert calls == [3]  # one batched generate for the three clips
    assert len(res) == 3
    for r in res:
        assert r.error is None and isinstance(r.text, str)
        assert 0 < r.tokens <= 12
    greedy = be.caption([_req(0)])[0].text  # left padding does not change a clip's caption
    assert greedy == res[0].text


def test_one_bad_clip_is_one_model_error(tiny_vlm, monkeypatch):
    be = TransformersBackend(_cfg(tiny_vlm))
    real = be._generate

    def flaky(reqs, kind):
        if len(reqs) > 1 or reqs[0].clip_id == "clip1":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(reqs, kind)

    monkeypatch.setattr(be, "_generate", flaky)
    res = be.caption([_req(0), _req(1), CaptionRequest("clip2", None, {})])
    assert res[0].error is None and res[0].text is not None
    assert res[1].error == "model_error" and "out of memory" in res[1].detail
    assert res[2].error == "model_error" and res[2].detail == "no frames"


def test_missing_weights_fail_fast(tmp_path):
    with pytest.raises(WeightsMissing, match="no config.json"):
        check_weights(str(tmp_path))
    with pytest.raises(WeightsMissing, match="not-a-real-org/not-a-model"):
        check_weights("not-a-real-org/not-a-model")
    with pytest.raises(WeightsMissing, match="needs a model"):
        check_weights("")
    write_clips(tmp_path / "out", [Shot(seconds=1.0)])
    with pytest.raises(WeightsMissing, match="not-a-real-org/not-a-model"):
        run_recaption(tmp_path / "out", _cfg("not-a-real-org/not-a-model"))
    assert not (tmp_path / "out" / "pairs").exists()


def test_a_model_dir_without_its_weights_fails_fast(tiny_vlm, tmp_path):
    """No weight file, or a checkpoint missing tensors (transformers would fill them with
    random values): refused, never a caption from made-up weights."""
    import shutil

    from safetensors.numpy import load_file, save_file

    with pytest.raises(WeightsMissing, match="does not exist"):
        check_weights(str(tmp_path / "nope"))
    bare = tmp_path / "bare"
    shutil.copytree(tiny_vlm, bare, ignore=shutil.ignore_patterns("*.safetensors*", "*.bin"))
    with pytest.raises(WeightsMissing, match="holds no weights"):
        check_weights(str(bare))
    partial = tmp_path / "partial"
    shutil.copytree(tiny_vlm, partial)
    [f] = list(partial.glob("*.safetensors"))
    tensors = load_file(f)
    gone = sorted(tensors)[0]
    save_file({k: v for k, v in tensors.items() if k != gone}, f, metadata={"format": "pt"})
    check_weights(str(partial))  # the files are there; the load finds the hole
    with pytest.raises(WeightsMissing, match="weight\\(s\\) missing from its files"):
        TransformersBackend(_cfg(str(partial)))


def test_job_with_tiny_vlm(ray_session, tiny_vlm, tmp_path):
    """Through Ray (CPU frame prep → actor pool): a row per clip, lineage set."""
    out = tmp_path / "out"
    rows = write_clips(out, [Shot(color="red", seconds=1.0), Shot(kind="pan", seconds=1.0),
                             Shot(color="blue", direction="up", seconds=1.0)])  # fmt: skip
    summary = run_recaption(out, _cfg(tiny_vlm, short_caption="generate"))
    pairs = [r for f in (out / "pairs").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    rejects = [
        r for f in (out / "rejects").glob("caption-*.parquet") for r in pq.read_table(f).to_pylist()
    ]
    assert sorted(r["clip_id"] for r in pairs + rejects) == sorted(r["clip_id"] for r in rows)
    for r in rejects:
        assert r["stage"] == "caption" and r["reason"] in (*REASONS, "model_error"), r
    for p in pairs:
        assert (
            p["caption"] and p["caption_source"] == tiny_vlm and p["caption_prompt_version"] == "v1"
        )
        assert p["caption_model_revision"].startswith("local:") and p["captioned_at"] is not None
        assert p["caption_short"] and p["caption_words"] >= 1
    assert summary["counts"]["pending"] == 0
    assert summary["last_run"]["captioned"] == len(pairs)


def test_frame_prep_is_a_separate_cpu_stage(ray_session, tiny_vlm, tmp_path):
    """Decoding never runs inside the caption actor: Ray must not fuse the two stages."""
    from recaption.pipeline import build_dataset

    out = tmp_path / "out"
    write_clips(out, [Shot(seconds=1.0)])
    ds = build_dataset(sorted((out / "clips").glob("*.parquet")), set(), _cfg(tiny_vlm))
    stats = ds.materialize().stats()
    assert "MapBatches(prepare_batch)->MapBatches(CaptionStage)" not in stats
    assert "MapBatches(prepare_batch)" in stats and "MapBatches(CaptionStage)" in stats
