"""The demo end to end, reduced (the one slow test CI runs): every output exists and is valid."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from common.video import video_info
from schemas.validate import check_file


@pytest.mark.slow
def test_demo_end_to_end_reduced(tmp_path, ray_session):
    from spacetime_cli import main

    out = tmp_path / "demo"
    argv = ["demo", "--output", str(out), "--videos", "2", "--seconds-per-shot", "1.5",
            "--steps", "12", "--shape-shots", "3", "--no-real-footage",
            "--prompt", "a red circle moving left"]  # fmt: skip
    assert main(argv) == 0
    data = out / "data"
    truth = json.loads((out / "footage" / "synthetic" / "truth.json").read_text())
    assert [sum(s["kind"] == "shape" for s in v["shots"]) for v in truth] == [3, 3]

    # Every table on disk validates against its schema (footer: columns, types, version).
    tables = {"clips": "clips", "rejects": "rejects", "pairs": "pairs"}
    counts = {}
    for folder, table in tables.items():
        files = sorted((data / folder).glob("*.parquet"))
        for f in files:
            check_file(str(f), table)
        counts[folder] = sum(pq.read_metadata(f).num_rows for f in files)
    assert counts["clips"] > 0 and counts["pairs"] > 0, counts

    # The manifest accounts for every source and matches the shards.
    c = json.loads((data / "manifest.json").read_text())["counts"]
    assert c["sources_seen"] == c["sources_ok"] + c["sources_failed"] + c["sources_duplicate"]
    assert c["sources_seen"] >= 2
    assert c["clips_kept"] == counts["clips"]

    # Every pair has a caption and points at a kept clip.
    pairs = pq.read_table(data / "pairs", columns=["clip_id", "caption"]).to_pylist()
    kept = set(pq.read_table(data / "clips", columns=["clip_id"]).column("clip_id").to_pylist())
    assert all(p["caption"] and p["clip_id"] in kept for p in pairs)

    # The generated clip decodes with PyAV and has the trained clip geometry.
    videos = sorted(out.glob("generated_*.mp4"))
    assert len(videos) == 1
    info = video_info(videos[0])
    assert info["num_frames"] >= 4 and info["width"] >= 32 and info["height"] >= 32, info

    # The model trained on the moving-object clips only, under the demo's time limit.
    from common.demo import MOVING_OBJECTS

    train_cfg = json.loads((out / "run" / "train_config.json").read_text())["train"]
    assert train_cfg["where"] == json.loads(json.dumps(MOVING_OBJECTS))
    assert train_cfg["max_minutes"] == 11.0 and train_cfg["steps"] == 12

    # A checkpoint was written and the report page has its sections and embedded figures.
    assert any((out / "run").rglob("ema.safetensors"))
    page = (data / "report" / "index.html").read_text()
    assert "<h2>" in page and "funnel" in page.lower() and "<img" in page
    report = json.loads((data / "report" / "report.json").read_text())
    assert report["funnel"], report.keys()


def test_default_prompts_are_what_the_attribute_captioner_writes_for_such_clips():
    """The demo's model is trained on attribute captions; its prompts must be written alike."""
    from common.demo import DEFAULT_PROMPTS, shape_prompt

    assert DEFAULT_PROMPTS == (shape_prompt("red", "left"), shape_prompt("blue", "up"))


def test_demo_footage_step_resumes_safely(tmp_path, monkeypatch):
    """A real clip cut short by an interrupted copy is copied again; footage made with other
    settings is not silently reused (the demo stops, naming both)."""
    import argparse

    from common import demo

    class Stop(Exception):
        pass

    def stop(argv):
        raise Stop  # the steps after the footage are not under test here

    made = []
    monkeypatch.setattr(demo, "_call", stop)
    monkeypatch.setattr("common.raylib.init_ray", lambda *a, **k: None)
    monkeypatch.setattr("curate.synthetic.demo_corpus",
                        lambda d, **kw: (made.append(kw), d.mkdir(parents=True, exist_ok=True),
                                         (d / "truth.json").write_text("[]")))  # fmt: skip
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    out = tmp_path / "demo"
    args = parser.parse_args(["demo", "--output", str(out), "--videos", "2"])
    [real] = [p for p in demo.real_footage() if p.name == "bikes.mp4"]
    (out / "footage" / "real").mkdir(parents=True)
    (out / "footage" / "real" / "bikes.mp4").write_bytes(b"cut short")
    with pytest.raises(Stop):
        demo.run_demo(args)
    assert (out / "footage" / "real" / "bikes.mp4").read_bytes() == real.read_bytes()
    with pytest.raises(Stop):
        demo.run_demo(args)  # same settings: the footage is reused
    assert len(made) == 1
    args = parser.parse_args(["demo", "--output", str(out), "--videos", "8"])
    with pytest.raises(SystemExit, match="holds footage made with .*'videos': 2"):
        demo.run_demo(args)
