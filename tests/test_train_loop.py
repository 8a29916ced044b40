"""Ray Train loop on CPU: the loss falls, a rerun resumes with the same batches, a killed
worker is restarted from the last checkpoint. Two workers, a tiny DiT, tiny synthetic pairs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from train.config import TrainConfig
from train.index import pair_files, scan_pairs
from train.loop import train
from train.model import ModelConfig
from train.synthetic_pairs import make_synthetic_pairs
from train.text import TextConfig
from train.worker import learning_rate


def _cfg(steps: int) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(hidden=32, depth=2, heads=2),
        text=TextConfig(max_length=16),
        num_frames=4,
        frame_stride=2,
        buckets=("32x32",),
        image_fraction=0.0,
        batch_size=2,
        steps=steps,
        lr=3e-3,
        warmup=2,
        workers=2,
        cpus_per_worker=0.5,
        loader_cpus=1.0,
        checkpoint_every=3,
        log_every=5,
        sample_every=0,
        sample_steps=2,
        sample_prompts=("a red circle moving right",),
    )


def _log(run: Path, rank: int) -> list[dict]:
    return [json.loads(x) for x in (run / "batches" / f"rank{rank}.jsonl").read_text().splitlines()]


def _by_mb(entries: list[dict]) -> dict[int, dict]:
    """Last record of each micro-batch (a restarted run re-records what it redoes)."""
    return {e["mb"]: e for e in entries if "mb" in e and "event" not in e}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    make_synthetic_pairs(out, n=16, sizes=((32, 32), (40, 36)), seconds=1.0, fps=12.0)
    return out


@pytest.fixture(scope="module")
def reference(ray_session, pairs, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "reference"
    summary = train([str(pairs)], run, _cfg(20))
    return run, summary


def test_loss_falls_and_run_dir_is_complete(reference):
    run, summary = reference
    assert summary["final_step"] == 20 and not summary["resumed"]
    losses = []
    for step in range(20):
        per_rank = [_by_mb(_log(run, r))[step]["loss"] for r in (0, 1)]
        losses.append(float(np.mean(per_rank)))
    first, last = np.mean(losses[:4]), np.mean(losses[-5:])
    assert last < 0.85 * first, f"loss did not fall: first {first:.3f}, last {last:.3f}"
    assert json.loads((run / "train_config.json").read_text())["train"]["steps"] == 20
    assert list((run / "tb").glob("events.out.tfevents*"))
    assert (run / "samples" / "step_000020_0.mp4").stat().st_size > 0
    assert summary["metrics"]["samples_per_s"] > 0 and "tokens_per_s" in summary["metrics"]
    # Every batch of a rank has one shape; both ranks consumed the same micro-batches.
    assert sorted(_by_mb(_log(run, 0))) == sorted(_by_mb(_log(run, 1))) == list(range(20))
    # The run generates from its EMA weights.
    from train.generate import generate

    [video] = generate(run, ["a red circle moving right"], steps=2)
    assert video.shape == (4, 32, 32, 3)


def _assert_same_as_reference(run: Path, ref: Path, mbs: range) -> None:
    for rank in (0, 1):
        got, want = _by_mb(_log(run, rank)), _by_mb(_log(ref, rank))
        for mb in mbs:
            assert got[mb]["hash"] == want[mb]["hash"], f"rank {rank} micro-batch {mb} differs"
            assert got[mb]["loss"] == pytest.approx(want[mb]["loss"], rel=1e-4, abs=1e-6)


def test_killed_worker_restarts_from_checkpoint_then_rerun_resumes(reference, pairs, tmp_path):
    ref, _ = reference
    run = tmp_path / "crashy"
    marker = tmp_path / "crashed_once"
    # Rank 1 dies right after step 5; the last checkpoint is at step 3.
    summary = train(
        [str(pairs)], run, _cfg(8), crash_at={"rank": 1, "step": 5, "marker": str(marker)}
    )
    assert marker.exists(), "the crash hook did not fire"
    assert summary["final_step"] == 8
    starts = [e for e in _log(run, 0) if e.get("event") == "start"]
    assert [s["resumed_from_step"] for s in starts] == [None, 3]
    # The restarted group continued with the batches (and losses) of an uninterrupted run.
    _assert_same_as_reference(run, ref, range(8))

    # Stop here; rerunning the same command with more steps resumes from step 8.
    summary = train([str(pairs)], run, _cfg(11))
    assert summary["resumed"] and summary["start_step"] == 8 and summary["final_step"] == 11
    starts = [e for e in _log(run, 1) if e.get("event") == "start"]
    assert starts[-1]["resumed_from_step"] == 8
    _assert_same_as_reference(run, ref, range(8, 11))


def test_max_minutes_stops_with_a_checkpoint_then_rerun_continues(reference, pairs, tmp_path):
    ref, _ = reference
    run = tmp_path / "budget"
    # A budget spent by the first step: both ranks stop there (rank 0's clock decides).
    summary = train([str(pairs)], run, dataclasses.replace(_cfg(20), max_minutes=1e-9))
    assert summary["final_step"] == 1 and summary["checkpoint"]
    assert sorted(_by_mb(_log(run, 0))) == sorted(_by_mb(_log(run, 1))) == [0]
    summary = train([str(pairs)], run, _cfg(4))
    assert summary["resumed"] and summary["start_step"] == 1 and summary["final_step"] == 4
    _assert_same_as_reference(run, ref, range(4))


def test_fsdp2_with_grad_accum_trains_checkpoints_and_resumes(ray_session, pairs, tmp_path):
    """FSDP2 (``fully_shard``, gloo on CPU) with 2 micro-batches per step: the sharded model
    trains, its checkpoint holds full (gathered) weights that load for generation, and a rerun
    resumes from it. ``train.where`` keeps half the directions: only those clips are drawn.
    Half the samples are mirrored and half reversed: their captions are embedded too. The
    text is whitened (``text_whiten``): the checkpoint holds the training tokens' whitening."""
    from dataclasses import replace

    from train.checkpoint import load_for_generation

    base = _cfg(4)
    cfg = replace(
        base,
        model=replace(base.model, text_norm=True, text_whiten=True),
        strategy="fsdp",
        grad_accum=2,
        checkpoint_every=2,
        where=(("motion_direction", "in", ["left", "right"]),),
        mirror_fraction=0.5,
        reverse_fraction=0.5,
    )
    run = tmp_path / "fsdp"
    summary = train([str(pairs)], run, cfg)
    assert summary["final_step"] == 4
    kept = scan_pairs(pair_files([str(pairs)]), cfg.where, variants=True)
    assert summary["pairs"] == kept.num_rows < summary["pairs_total"] == 16
    kept_ids = set(kept.column("clip_id").to_pylist())
    logs = [e for r in (0, 1) for e in _by_mb(_log(run, r)).values()]
    drawn = {c for e in logs for c in e["clip_ids"].split("|")}
    assert drawn and drawn <= kept_ids
    # Both ranks consumed the same 8 micro-batches (4 steps x 2), with finite losses.
    for rank in (0, 1):
        mbs = _by_mb(_log(run, rank))
        assert sorted(mbs) == list(range(8))
        assert all(np.isfinite(e["loss"]) for e in mbs.values())
    model, state = load_for_generation(run)  # strict load: every full-size weight is there
    assert state["step"] == 4 and model.config.hidden == 32
    # text_norm: the statistics of the run's training captions, in the checkpoint
    from train.embeddings import read_embeddings, token_covariance, token_stats
    from train.index import unique_captions

    captions = unique_captions(kept)  # the kept clips' captions and their augmented variants
    n_captions = len(captions)
    embedded = read_embeddings(run / "text" / "embeddings.arrow")[0].column("caption")
    assert embedded.to_pylist()[:n_captions] == captions
    assert set(captions) > set(kept.column("caption").to_pylist())
    mean, std = token_stats(run / "text" / "embeddings.arrow", range(n_captions))
    np.testing.assert_allclose(model.text_mean.numpy(), mean, rtol=1e-6)
    flat = std <= 1e-3 * std.mean()  # MiniLM's layer 3 has (near-)constant dimensions
    np.testing.assert_allclose(model.text_std.numpy(), np.where(flat, 1.0, std), rtol=1e-6)
    assert float(model.text_std.min()) > 0 and float(model.text_mean.abs().max()) > 0
    # text_whiten: text_proj whitens the same tokens (up to the eps regulariser)
    cov = token_covariance(run / "text" / "embeddings.arrow", range(n_captions))[2]
    lam, u = np.linalg.eigh(cov)
    lam = np.clip(lam, 0.0, None)
    ref = (u / np.sqrt(lam + model.config.text_whiten_eps * lam.mean())) @ u.T
    np.testing.assert_allclose(model.text_proj.numpy(), ref, rtol=1e-3, atol=1e-3)
    assert not np.allclose(model.text_proj.numpy(), np.eye(len(cov)))
    summary = train([str(pairs)], run, replace(cfg, steps=6))
    assert summary["resumed"] and summary["start_step"] == 4 and summary["final_step"] == 6


def test_learning_rate_warms_up_then_follows_the_decay():
    def lrs(**kw):
        cfg = TrainConfig(lr=1.0, warmup=10, steps=110, **kw)
        return [learning_rate(cfg, s) for s in range(cfg.steps)]

    const, cos, lin = lrs(), lrs(lr_decay="cosine"), lrs(lr_decay="linear", lr_final=0.1)
    for sched in (const, cos, lin):
        assert sched[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert const[10:] == [1.0] * 100
    assert cos[59] == pytest.approx(0.5) and cos[-1] == pytest.approx(0.0)
    assert lin[59] == pytest.approx(0.55) and lin[-1] == pytest.approx(0.1)
    assert sorted(cos[9:], reverse=True) == cos[9:]
    assert sorted(lin[9:], reverse=True) == lin[9:]
    # lr_decay_start: constant until 0.5 * 110 = step 55, then linear to 0 at step 110.
    late = lrs(lr_decay="linear", lr_decay_start=0.5)
    assert late[10:54] == [1.0] * 44
    assert late[54] == pytest.approx(1.0) and late[65] == pytest.approx(0.8)  # 11 of 55 steps
    assert late[-1] == pytest.approx(0.0)
    assert sorted(late[9:], reverse=True) == late[9:]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_grad_accum_micro_batches_step_like_one_model(strategy, tmp_path):
    """``_no_sync`` as the loop uses it, 2 micro-batches per step, on a gloo group of one:
    the wrapped model (DDP, or FSDP2 ``fully_shard``) takes the same optimizer steps as an
    unwrapped copy accumulating the same gradients. (FSDP2 once kept its gradient sync off
    through the last micro-batch's backward: no gradient reached the optimizer, the weights
    never moved.)"""
    import copy

    import torch
    import torch.distributed as dist
    from torch import nn

    from train.worker import _no_sync

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ref = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
        model = copy.deepcopy(ref)
        if strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for layer in model:
                if isinstance(layer, nn.Linear):
                    fully_shard(layer)
            fully_shard(model)
        else:
            model = nn.parallel.DistributedDataParallel(model)
        init = [p.detach().clone() for p in ref.parameters()]
        opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (ref, model)]
        grad_accum = 2
        for mb in range(4):
            x = torch.randn(8, 4, generator=torch.Generator().manual_seed(mb))
            last = (mb + 1) % grad_accum == 0
            (ref(x).pow(2).mean() / grad_accum).backward()
            with _no_sync(model, last):
                loss = model(x).pow(2).mean()
            (loss / grad_accum).backward()
            if last:
                for o in opts:
                    o.step()
                    o.zero_grad(set_to_none=True)
        got = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()]
        for g, want, p0 in zip(got, ref.parameters(), init, strict=True):
            assert not torch.equal(want, p0)
            torch.testing.assert_close(g.detach(), want.detach(), atol=1e-6, rtol=1e-5)
    finally:
        dist.destroy_process_group()


def test_resume_with_other_data_plan_settings_is_refused(reference, pairs):
    """The checkpoint's micro-batch counts batches of batch_size x workers clips: resuming
    with other values would skip or repeat clips, so the run refuses and names them (and the
    run directory is left as it was)."""
    from common.config import ConfigError

    ref, _ = reference
    recorded = (ref / "train_config.json").read_text()
    cfg = dataclasses.replace(_cfg(30), workers=1, batch_size=4)
    with pytest.raises(
        ConfigError, match=r"batch_size=2, workers=2; this run asks for batch_size=4, workers=1"
    ):
        train([str(pairs)], ref, cfg)
    assert (ref / "train_config.json").read_text() == recorded
