"""``spacetime recaption``: help, a run, and the exit code when weights are missing."""

from __future__ import annotations

import argparse
import json

import pytest

from curate.synthetic import Shot
from recaption.cli import load_config, register
from recaption.testing import write_clips


def _parser():
    p = argparse.ArgumentParser(prog="spacetime")
    register(p.add_subparsers(dest="command"))
    return p


def test_help_documents_backends_and_reasons(capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["recaption", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in (
        "attributes",
        "transformers",
        "openai",
        "repetition_loop",
        "low_alignment",
        "--model",
    ):
        assert word in out


def test_flags_override_the_preset():
    args = _parser().parse_args(["recaption", "OUT", "--backend", "openai", "--model", "m",
                                 "--preset", "full", "--set", "max_concurrency=3"])  # fmt: skip
    cfg = load_config(args)
    assert (cfg.backend, cfg.model, cfg.max_concurrency, cfg.num_gpus) == ("openai", "m", 3, 1.0)
    assert load_config(_parser().parse_args(["recaption", "OUT"])).backend == "attributes"


def test_run_and_missing_weights(ray_session, tmp_path, capsys):
    out = tmp_path / "out"
    write_clips(out, [Shot(seconds=1.0), Shot(color="green", direction="down", seconds=1.0)])
    args = _parser().parse_args(["recaption", str(out)])
    assert args.func(args) == 0
    assert "this run: 2 captioned, 0 rejected" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["recaption"]["counts"]["pairs"] == 2
    bad = _parser().parse_args(["recaption", str(out), "--backend", "transformers", "--model",
                                str(tmp_path / "no-such-model")])  # fmt: skip
    assert bad.func(bad) == 2
    # settings that would send no request, and a clips table of the wrong shape: exit 2
    for setting in ("max_retries=-1", "max_concurrency=0"):
        bad = _parser().parse_args(["recaption", str(out), "--backend", "openai", "--model", "m",
                                    "--set", setting])  # fmt: skip
        assert bad.func(bad) == 2
    import pyarrow as pa
    import pyarrow.parquet as pq

    odd = tmp_path / "odd"
    (odd / "clips").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), odd / "clips" / "part-00000.parquet")
    bad = _parser().parse_args(["recaption", str(odd)])
    assert bad.func(bad) == 2
