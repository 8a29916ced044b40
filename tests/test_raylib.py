"""``common.raylib``: the one place that starts Ray and wraps its jobs."""

from __future__ import annotations

import logging

import ray
from ray.util.debug import reset_log_once

from common.raylib import free_cpu_check


def test_a_write_warns_of_no_free_cpu_in_plain_words_only(
    ray_session, tmp_path, monkeypatch, caplog
):
    """Ray 2.60 checks for free CPUs again after a write job has finished, when the view is
    often stale, and warned "The Dataset job will hang" on every curate run: the wave's write
    says it once, before the job, in its own words, and only when no CPU is free."""
    caplog.set_level(logging.WARNING)
    plain = "wave 3: no CPU of the Ray cluster is free now (other jobs or actors hold them)"
    for free, said in (({"CPU": 2.0}, []), ({}, [plain + "; it starts when one is"])):
        reset_log_once("cpu_warning")
        caplog.clear()
        monkeypatch.setattr(ray, "available_resources", lambda free=free: dict(free))
        with free_cpu_check("wave 3", wait_s=0.05):
            ds = ray.data.from_items([{"a": i} for i in range(2)], override_num_blocks=1)
            ds.write_parquet(str(tmp_path / f"w{len(free)}"))
        got = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [m for m in got if "will hang" in m], got
        assert [m for m in got if "no CPU of the Ray cluster" in m] == said, got
