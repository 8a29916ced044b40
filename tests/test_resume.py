"""Resume after ``kill -9``: the rerun does only what is missing, never writes a clip twice,
and ends with exactly the clips of a clean run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from curate.cli import main

ROOT = Path(__file__).resolve().parent.parent


def clip_ids(out: Path) -> list[str]:
    return [
        cid
        for f in sorted((out / "clips").glob("*.parquet"))
        for cid in pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist()
    ]


def complete_waves(out: Path) -> list[Path]:
    waves = out / "_work" / "waves"
    if not waves.exists():
        return []
    return sorted(
        p for p in waves.iterdir() if (p / "sources.json").exists() and p.suffix != ".tmp"
    )


def test_kill_9_mid_run_then_resume(ray_session, tmp_path, synthetic_dir, bikes_mp4):
    inp = tmp_path / "in"
    shutil.copytree(synthetic_dir[0], inp)
    shutil.copy(bikes_mp4, inp / "bikes.mp4")
    n_sources = len(list(inp.glob("*.mp4")))
    args = [str(inp), "--no-progress", "--set", "wave_size=1"]

    clean = tmp_path / "clean"
    assert main(["curate", *args, "--output", str(clean)]) == 0
    want = clip_ids(clean)
    assert len(want) == len(set(want)) > n_sources

    out = tmp_path / "killed"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate.cli", "curate", *args, "--output", str(out)],
        cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not complete_waves(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert complete_waves(out), "no source finished in time"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    done_before = {
        p.name: json.loads((p / "sources.json").read_text()) for p in complete_waves(out)
    }
    assert 0 < len(done_before) < n_sources  # killed mid-run
    assert not (out / "manifest.json").exists()

    assert main(["curate", *args, "--output", str(out)]) == 0  # the same command again
    got = clip_ids(out)
    assert len(got) == len(set(got)), "a clip was written twice"
    assert sorted(got) == sorted(want)
    after = {p.name: json.loads((p / "sources.json").read_text()) for p in complete_waves(out)}
    for name, pairs in done_before.items():
        assert after[name] == pairs  # finished waves kept as they were
    every = [tuple(p) for pairs in after.values() for p in pairs]
    assert len(every) == len(set(every)) == n_sources  # each source processed exactly once
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"] == json.loads((clean / "manifest.json").read_text())["counts"]


def test_a_rerun_retries_sources_that_timed_out(ray_session, tmp_path, bikes_mp4):
    """A split that ran out of time is a decode_timeout reject; the rerun with a longer
    timeout (an operational setting, allowed on resume) retries it, and the tables hold only
    the retried source's rows: no stale failure, counts that add up."""
    from tables import read

    from curate.config import CurateConfig, replace
    from curate.pipeline import run_curate

    out = tmp_path / "out"
    cfg = CurateConfig(short_side=64)
    hasty = replace(cfg, split_timeout_s=0.01, split_timeout_per_video_s=0.0)
    m = run_curate([str(bikes_mp4)], out, hasty)
    assert m["counts"]["sources_failed"] == 1 and m["counts"]["clips_kept"] == 0
    assert m["rejects_by_reason"]["clip"] == {"decode_timeout": 1}
    m = run_curate([str(bikes_mp4)], out, cfg)
    assert m["counts"] == {"sources_seen": 1, "sources_ok": 1, "sources_failed": 0,
                           "sources_duplicate": 0, "clips_kept": 5, "clips_rejected": 0}  # fmt: skip
    assert "clip" not in m["rejects_by_reason"] and len(complete_waves(out)) == 2
    [src] = read(out, "sources")
    assert src["status"] == "ok" and src["num_clips"] == 5
    assert all(r["reason"] != "decode_timeout" for r in read(out, "rejects"))
    m = run_curate([str(bikes_mp4)], out, cfg)  # done now: nothing is retried
    assert len(complete_waves(out)) == 2 and m["counts"]["clips_kept"] == 5
