"""``spacetime curate`` end to end on Ray Data: broken corpus, real footage, rerun, outputs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest
from corpus import corrupt_corpus
from tables import read

from curate.cli import main
from curate.config import CurateConfig
from curate.pipeline import run_curate
from schemas.tables import MANIFEST_FIELDS

BIKES_CUTS = (0, 30, 76, 137, 187, 242, 250)


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_broken_corpus_every_source_accounted_for(ray_session, tmp_path, bikes_mp4):
    inp = tmp_path / "in" / "odd ..dir ü"
    expected = corrupt_corpus(inp, bikes_mp4)
    out = tmp_path / "out"
    before = all_files(tmp_path)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        m = run_curate([str(tmp_path / "in")], out, CurateConfig(wave_size=4))
    # Ray 2.60 calls map_batches(max_retries=...) deprecated, and users saw it on every run
    assert not [w for w in said if "ray_remote_args" in str(w.message)]
    # nothing written outside OUT
    assert {p for p in all_files(tmp_path) - before if out not in p.parents} == set()
    assert set(m) >= set(MANIFEST_FIELDS)
    c = m["counts"]
    assert c["sources_seen"] == len(expected)
    assert c["sources_seen"] == c["sources_ok"] + c["sources_failed"] + c["sources_duplicate"]
    # the byte-identical copy is a duplicate, not a failure
    assert c["sources_ok"] == 2 and c["sources_failed"] == 5 and c["sources_duplicate"] == 1

    rejects = read(out, "rejects")
    by_file = {}
    for r in rejects:
        if r["clip_id"] is None and r["stage"] in ("source", "probe"):
            by_file.setdefault(Path(r["source_path"]).name, []).append(r["reason"])
    assert by_file == {n: [r] for n, r in expected.items() if r}
    assert all(r["detail"] for r in rejects if r["stage"] in ("source", "probe"))
    assert m["rejects_by_reason"]["probe"] == {
        "empty_file": 1, "no_video_stream": 1, "not_a_video": 1, "truncated_file": 1,
        "undecodable_first_frame": 1,
    }  # fmt: skip
    assert m["rejects_by_reason"]["source"] == {"duplicate_source": 1}

    sources = read(out, "sources")
    assert sorted(Path(s["source_path"]).name for s in sources) == sorted(expected)
    status = {Path(s["source_path"]).name: s["status"] for s in sources}
    assert status["same content, other name.mp4"] == "duplicate"
    assert status["good clip ünïcode.mp4"] == "ok" and status["real.mp4"] == "ok"

    clips = read(out, "clips")
    assert len(clips) == c["clips_kept"] > 0
    assert len({r["clip_id"] for r in clips}) == len(clips)
    assert {Path(r["source_path"]).name for r in clips} <= {"good clip ünïcode.mp4", "real.mp4"}
    for r in clips:
        if Path(r["source_path"]).name == "real.mp4":  # bikes: inside one shot
            a, b = r["start_s"] * 25, r["end_s"] * 25
            assert any(
                s - 1e-3 <= a and b <= e + 1e-3
                for s, e in zip(BIKES_CUTS, BIKES_CUTS[1:], strict=False)
            )
        assert min(r["width"], r["height"]) <= 128 and r["width"] % 2 == 0 == r["height"] % 2


def test_cli_real_footage_and_rerun(ray_session, tmp_path, bikes_mp4, bunny_mp4):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(bikes_mp4, inp / "bikes.mp4")
    shutil.copy(bunny_mp4, inp / "bunny.mp4")
    out = tmp_path / "out"
    argv = ["curate", str(inp), "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    m1 = json.loads((out / "manifest.json").read_text())
    clips1 = read(out, "clips")
    assert m1["counts"]["sources_ok"] == 2 and m1["counts"]["clips_kept"] == len(clips1) >= 7
    bunny = [r for r in clips1 if r["source_path"].endswith("bunny.mp4")]
    assert {r["scene_index"] for r in bunny} == {0}  # one shot
    waves = sorted(os.listdir(out / "_work" / "waves"))
    # rerun: nothing to do, same clips
    assert main(argv) == 0
    assert sorted(os.listdir(out / "_work" / "waves")) == waves
    assert sorted(r["clip_id"] for r in read(out, "clips")) == sorted(r["clip_id"] for r in clips1)
    m2 = json.loads((out / "manifest.json").read_text())
    assert m2["run_id"] == m1["run_id"] and m2["counts"] == m1["counts"]
    # a config that changes the clips is refused on the same OUT (exit 2), --restart allows it
    assert main([*argv, "--set", "max_seconds=3"]) == 2
    assert main([*argv, "--set", "max_seconds=3", "--restart"]) == 0
    assert json.loads((out / "manifest.json").read_text())["run_id"] != m1["run_id"]


def test_bad_override_is_a_clear_error(tmp_path, capsys, caplog):
    rc = main(["curate", str(tmp_path), "--output", str(tmp_path / "o"), "--set", "nope=1"])
    assert rc == 2
    assert "nope" in caplog.text


@pytest.mark.parametrize("kind", ["s3-like"])
def test_uri_sources(ray_session, tmp_path, bikes_mp4, kind):
    """Remote sources go through pyarrow.fs (file:// here; s3:// takes the same path)."""
    shutil.copy(bikes_mp4, tmp_path / "b.mp4")
    out = tmp_path / "out"
    m = run_curate([f"file://{tmp_path}/b.mp4"], out, CurateConfig(short_side=64))
    assert m["counts"]["sources_ok"] == 1 and m["counts"]["clips_kept"] == 5
    assert not (out / "_work" / "scratch").exists()  # local copies cleaned up


def _fake_module(monkeypatch, name, **attrs):
    import types

    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


def test_scores_come_from_the_clip_frames(monkeypatch, bikes_mp4):
    """Decode once: score_frames sees exactly the frames that were encoded."""
    from dataclasses import dataclass

    from curate.clips import split_source
    from curate.probe import probe

    seen = []

    def score_frames(frames, fps, cfg):
        seen.append(frames.shape)
        return {"luma_mean": float(frames.mean()), "motion": 1.5}

    _fake_module(monkeypatch, "curate.scoring", score_frames=score_frames,
                 key_frames=lambda frames, fps, cfg: [b"jpeg0", b"jpeg1"])  # fmt: skip

    @dataclass(frozen=True)
    class Score:
        model_scorers_enabled: bool = True

    cfg = CurateConfig(score=Score())
    rows = split_source(str(bikes_mp4), "b", "b", probe(str(bikes_mp4)), cfg)
    kept = [r for r in rows if r["_kind"] == "clip"]
    assert [(r["num_frames"], r["height"], r["width"], 3) for r in kept] == seen
    assert all(r["motion"] == 1.5 and r["_key_frames"] == [b"jpeg0", b"jpeg1"] for r in kept)


def test_filter_stage_turns_clips_into_named_rejects(monkeypatch):
    from curate.stages import filter_batch, to_staged

    def apply_filters(row, cfg):
        if row["motion"] < 1.0:
            return {
                "reason": "min_motion",
                "detail": f"motion {row['motion']} < 1.0",
                "value": row["motion"],
            }
        return None

    _fake_module(monkeypatch, "curate.filters", apply_filters=apply_filters)
    base = {"source_id": "s", "source_path": "p", "start_s": 0.0, "end_s": 1.0, "fps": 12.0,
            "num_frames": 12, "width": 4, "height": 4, "video": b"v", "_key_frames": [b"k"]}  # fmt: skip
    batch = to_staged([
        {**base, "_kind": "clip", "clip_id": "slow", "motion": 0.2},
        {**base, "_kind": "clip", "clip_id": "fast", "motion": 3.0},
        {"_kind": "source", "source_id": "s", "source_path": "p", "status": "ok"},
    ])  # fmt: skip
    out = {r["clip_id"]: r for r in filter_batch(batch, CurateConfig()).to_pylist() if r["clip_id"]}
    assert out["slow"]["_kind"] == "reject" and out["slow"]["stage"] == "filter"
    assert out["slow"]["reason"] == "min_motion" and out["slow"]["value"] == pytest.approx(0.2)
    assert out["slow"]["video"] is None
    assert out["fast"]["_kind"] == "clip" and out["fast"]["video"] == b"v"
    assert all(r["_key_frames"] is None for r in out.values())  # transient column dropped


def test_global_dedup_drops_become_rejects(monkeypatch, ray_session, tmp_path, bikes_mp4):
    calls = []

    def find_duplicates(ds, cfg):
        ids = sorted(r["clip_id"] for r in ds.select_columns(["clip_id"]).take_all())
        calls.append(ids)
        return [{"clip_id": ids[0], "kept_clip_id": ids[1], "reason": "near_duplicate",
                 "detail": "phash distance 3 <= 6", "value": 3.0}]  # fmt: skip

    _fake_module(monkeypatch, "curate.dedup", find_duplicates=find_duplicates)
    shutil.copy(bikes_mp4, tmp_path / "b.mp4")
    out = tmp_path / "out"
    m = run_curate([str(tmp_path / "b.mp4")], out, CurateConfig(short_side=64))
    assert len(calls) == 1 and len(calls[0]) == 5  # every clip, once, after all sources
    assert m["counts"]["clips_kept"] == 4 and m["rejects_by_reason"]["dedup"] == {
        "near_duplicate": 1
    }
    dropped = [r for r in read(out, "rejects") if r["stage"] == "dedup"]
    assert dropped[0]["clip_id"] == calls[0][0] and dropped[0]["kept_clip_id"] == calls[0][1]
    assert calls[0][0] not in {r["clip_id"] for r in read(out, "clips")}


@pytest.mark.parametrize(
    "overrides, models",
    [({}, False), ({"split_num_cpus": 2.0, "max_concurrency": 3}, False), ({}, True)],
)
def test_wave_write_fuses_into_the_task_before_it(ray_session, tmp_path, overrides, models):
    # the wave's write runs inside the split task (or the filter task after a model stage):
    # Ray Data fuses the two operators only when their resources and concurrency agree
    import ray

    from curate.pipeline import FILTER_NUM_CPUS, SPLIT_MAX_RETRIES, _split_write_args

    def _pass(batch):  # nested: pickled by value, the workers need not import this module
        return batch

    split_kw, write_kw = _split_write_args(CurateConfig(**overrides), models)
    filter_kw = {"num_cpus": FILTER_NUM_CPUS, "max_retries": SPLIT_MAX_RETRIES}  # as _run_wave
    before = split_kw if not models else filter_kw
    ds = ray.data.from_items([{"a": i} for i in range(3)], override_num_blocks=3)
    ds = ds.map_batches(_pass, batch_size=1, batch_format="pyarrow", **before)
    ds.write_parquet(str(tmp_path / "w"), **write_kw)
    ops = [
        ln.split(":")[0] for ln in ds._write_ds.stats().splitlines() if ln.startswith("Operator")
    ]
    assert ops == ["Operator 0 FromItems", "Operator 1 MapBatches(_pass)->Write"]
    assert len(list((tmp_path / "w").glob("*.parquet"))) == 3


def test_bad_inputs_and_outputs_are_refused_before_out_is_touched(tmp_path, bikes_mp4):
    """Footage inside a directory curate rewrites, an --output that is a file, an input that
    does not exist: refused with the reason, and OUT (and the footage) left as they were."""
    from common.config import ConfigError

    out = tmp_path / "data"
    (out / "clips").mkdir(parents=True)
    footage = out / "clips" / "b.mp4"
    shutil.copy(bikes_mp4, footage)
    for restart in (False, True):
        with pytest.raises(ConfigError, match=r"b\.mp4 lies inside .*clips, which curate deletes"):
            run_curate([str(out / "clips")], out, CurateConfig(), restart=restart)
    assert footage.exists() and not (out / "_work").exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a directory"):
        run_curate([str(bikes_mp4)], afile, CurateConfig())
    with pytest.raises(FileNotFoundError, match="no such input"):
        run_curate([str(tmp_path / "nosuchdir")], tmp_path / "o2", CurateConfig())
    assert not (tmp_path / "o2" / "_work").exists()  # a corrected rerun is not refused


def test_unreadable_only_listing_on_a_used_out_and_empty_tables(ray_session, tmp_path, bikes_mp4):
    """A rerun whose listing holds only an unreadable source (its waves hold other sources)
    finishes with that source accounted for; a table with no rows is still one Parquet shard
    with its schema; an unreadable source's sources and rejects rows share a source_id."""
    import pyarrow.parquet as pq

    from schemas.tables import CLIPS

    out = tmp_path / "out"
    cfg = CurateConfig(short_side=64)
    assert run_curate([str(bikes_mp4)], out, cfg)["counts"]["clips_kept"] == 5
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    m = run_curate([str(tmp_path / "in")], out, cfg)
    assert m["counts"] == {"sources_seen": 1, "sources_ok": 0, "sources_failed": 1,
                           "sources_duplicate": 0, "clips_kept": 0, "clips_rejected": 0}  # fmt: skip
    assert pq.read_schema(out / "clips" / "part-00000.parquet").names == CLIPS.names
    assert pq.read_table(out / "clips").num_rows == 0
    [src], [rej] = read(out, "sources"), read(out, "rejects")
    assert rej["reason"] == "unreadable_source" and src["source_id"] == rej["source_id"]
    assert len(src["source_id"]) == 32


def test_a_source_gone_before_its_probe_is_a_reject_row(tmp_path):
    from curate.clips import process_source

    rows = process_source(str(tmp_path / "gone.mp4"), "s", "gone.mp4", 10, CurateConfig())
    assert [(r["_kind"], r.get("reason")) for r in rows] == [
        ("source", None),
        ("reject", "probe_error"),
    ]
    assert rows[0]["status"] == "failed" and "FileNotFoundError" in rows[1]["detail"]


def test_resume_allows_changing_where_the_model_stage_runs():
    from curate.config import replace
    from curate.pipeline import _resume_key
    from curate.score_config import ScoreConfig

    base = CurateConfig()
    ops = replace(base, score=ScoreConfig(batch_size=8, num_actors=2, device="cpu", num_gpus=0.5))
    assert _resume_key(ops) == _resume_key(base)
    assert _resume_key(replace(base, score=ScoreConfig(sample_fps=4.0))) != _resume_key(base)


def test_a_curate_rerun_keeps_recaption_outputs_of_kept_clips(ray_session, tmp_path, bikes_mp4):
    """recaption's pairs and caption rejects in OUT survive a curate rerun, and so does the
    manifest's recaption section (counts redone); a rerun whose clips change drops the rows of
    clips no longer kept, so train never reads a pair of a clip that is not curated."""
    import pyarrow.parquet as pq

    from recaption.config import RecaptionConfig
    from recaption.pipeline import run_recaption

    out = tmp_path / "out"
    cfg = CurateConfig(short_side=64)
    assert run_curate([str(bikes_mp4)], out, cfg)["counts"]["clips_kept"] == 5
    run_recaption(out, RecaptionConfig(), limit=2)
    run_recaption(out, RecaptionConfig(min_words=1000))  # the other 3: too_short rejects

    def recaptioned() -> tuple[int, int]:
        pairs = sum(pq.read_table(f).num_rows for f in (out / "pairs").glob("*.parquet"))
        rej = sum(pq.read_table(f).num_rows for f in (out / "rejects").glob("caption-*.parquet"))
        return pairs, rej

    assert recaptioned() == (2, 3)
    m = run_curate([str(bikes_mp4)], out, cfg)  # a rerun: nothing to do
    assert recaptioned() == (2, 3) and m["counts"]["clips_rejected"] == 0
    assert m["recaption"]["counts"] == {"clips_seen": 5, "pairs": 2, "caption_rejected": 3,
                                        "pending": 0}  # fmt: skip
    m = run_curate([str(bikes_mp4)], out, replace_cfg(cfg, max_seconds=1.5), restart=True)
    kept = m["counts"]["clips_kept"]
    assert kept > 0 and recaptioned() == (0, 0)  # new spans, new clip_ids
    assert m["recaption"]["counts"] == {"clips_seen": kept, "pairs": 0, "caption_rejected": 0,
                                        "pending": kept}  # fmt: skip


def test_pairs_follow_their_clip_when_its_source_is_renamed(ray_session, tmp_path, bikes_mp4):
    """A source renamed between curate runs keeps its clip_ids (content hash): its pairs stay,
    and name the new path as OUT/clips does, not the old one (now in no table). A pair whose
    video no longer has its clip's shape (captioned from another cut) is dropped, to be
    captioned again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recaption.config import RecaptionConfig
    from recaption.pipeline import run_recaption

    footage, out, cfg = tmp_path / "in", tmp_path / "out", CurateConfig(short_side=64)
    footage.mkdir()
    old = footage / "bikes.mp4"
    shutil.copy(bikes_mp4, old)
    assert run_curate([str(footage)], out, cfg)["counts"]["clips_kept"] == 5
    run_recaption(out, RecaptionConfig(), limit=3)
    # one pair as if captioned from another cut of its span (its clip split anew since)
    [shard] = sorted((out / "pairs").glob("*.parquet"))
    tbl = pq.read_table(shard)
    frames = tbl.column("num_frames").to_pylist()
    tbl = tbl.set_column(tbl.schema.get_field_index("num_frames"), "num_frames",
                         pa.array([frames[0] + 3, *frames[1:]], tbl.schema.field("num_frames").type))  # fmt: skip
    pq.write_table(tbl, shard)
    stale = tbl.column("clip_id")[0].as_py()
    old.rename(footage / "renamed.mp4")
    m = run_curate([str(footage)], out, cfg)
    assert m["counts"]["clips_kept"] == 5 and m["recaption"]["counts"]["pairs"] == 2
    assert m["recaption"]["counts"]["pending"] == 3  # the dropped pair's clip among them
    pairs = pa.concat_tables(pq.read_table(f) for f in sorted((out / "pairs").glob("*.parquet")))
    clips = {r["clip_id"]: r for r in read(out, "clips")}
    assert pairs.num_rows == 2 and stale not in pairs.column("clip_id").to_pylist()
    for p in pairs.to_pylist():
        assert (
            p["source_path"] == clips[p["clip_id"]]["source_path"] == str(footage / "renamed.mp4")
        )
        assert p["caption"] and p["motion"] == clips[p["clip_id"]]["motion"]


def replace_cfg(cfg: CurateConfig, **kw) -> CurateConfig:
    from curate.config import replace

    return replace(cfg, **kw)


def test_sources_num_clips_counts_the_clips_written(ray_session, tmp_path, bikes_mp4):
    from curate.score_config import FilterConfig

    cfg = CurateConfig(short_side=64)
    out = tmp_path / "out"
    assert run_curate([str(bikes_mp4)], out, cfg)["counts"]["clips_kept"] == 5
    assert [s["num_clips"] for s in read(out, "sources")] == [5]
    strict = replace_cfg(cfg, filters=FilterConfig(min_motion=1000.0))
    m = run_curate([str(bikes_mp4)], tmp_path / "strict", strict)
    assert m["counts"]["clips_kept"] == 0 and m["rejects_by_reason"]["filter"] == {"min_motion": 5}
    assert [s["num_clips"] for s in read(tmp_path / "strict", "sources")] == [0]
    # score_only keeps them all and counts what the filters would have dropped
    from curate.manifest import summary

    motions = sorted(c["motion"] for c in read(out, "clips"))
    low = sum(1 for v in motions if v < motions[2])
    audit = replace_cfg(cfg, filters=FilterConfig(score_only=True, min_motion=motions[2]))
    m = run_curate([str(bikes_mp4)], tmp_path / "audit", audit)
    assert m["counts"]["clips_kept"] == 5 and "filter" not in m["rejects_by_reason"]
    assert low >= 1 and m["filters_would_drop"] == {"min_motion": low}
    assert f"the filters would drop min_motion={low}" in summary(m)
    assert "filters_unjudged" not in m  # every clip had its motion score
    assert "filters_would_drop" not in run_curate([str(bikes_mp4)], out, cfg)  # only score_only
    # recaption after a run that kept no clip: nothing to caption, not "run curate first"
    from recaption.config import RecaptionConfig
    from recaption.pipeline import run_recaption

    section = run_recaption(tmp_path / "strict", RecaptionConfig())
    assert section["counts"] == {"clips_seen": 0, "pairs": 0, "caption_rejected": 0, "pending": 0}


def test_one_job_at_a_time_per_output(ray_session, tmp_path, bikes_mp4):
    """While a job holds OUT (another process, here a child holding the lock), curate and
    recaption on the same OUT refuse at once instead of interleaving their writes; once that
    process is gone (killed: no clean exit), the lock is free."""
    import subprocess

    from common.config import ConfigError
    from common.lock import LOCK_NAME
    from recaption.config import RecaptionConfig
    from recaption.pipeline import run_recaption

    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import sys, time; from filelock import FileLock; "
        f"l = FileLock({str(out / LOCK_NAME)!r}); l.acquire(); print('held', flush=True); "
        "time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="in use by another spacetime job"):
            run_curate([str(bikes_mp4)], out, CurateConfig())
        from curate.synthetic import Shot
        from recaption.testing import write_clips

        write_clips(out, [Shot(seconds=1.0)])
        with pytest.raises(ConfigError, match="in use by another spacetime job"):
            run_recaption(out, RecaptionConfig())
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "_work").exists() and not (out / "pairs").exists()
    assert run_recaption(out, RecaptionConfig())["counts"]["pairs"] == 1


@pytest.mark.parametrize("left_in", ["old-rejects", "final/rejects"])
def test_caption_rejects_survive_a_finalize_killed_mid_swap(
    ray_session, tmp_path, bikes_mp4, left_in
):
    """A finalize killed between moving OUT/rejects aside and moving the new table in leaves
    recaption's reject shards only under _work: the rerun puts them back."""
    from recaption.config import RecaptionConfig
    from recaption.pipeline import run_recaption

    out = tmp_path / "out"
    cfg = CurateConfig(short_side=64)
    run_curate([str(bikes_mp4)], out, cfg)
    run_recaption(out, RecaptionConfig(min_words=1000))  # 5 too_short caption rejects
    shards = sorted(p.name for p in (out / "rejects").glob("caption-*.parquet"))
    assert shards
    where = out / "_work" / left_in
    where.parent.mkdir(parents=True, exist_ok=True)
    (out / "rejects").rename(where)  # the state the kill left
    m = run_curate([str(bikes_mp4)], out, cfg)
    assert sorted(p.name for p in (out / "rejects").glob("caption-*.parquet")) == shards
    assert m["recaption"]["counts"]["caption_rejected"] == 5
    assert not (out / "_work" / "old-rejects").exists()


def test_a_source_that_kills_its_worker_every_time_is_a_reject(
    ray_session, tmp_path, bikes_mp4, monkeypatch
):
    """Ray Data retried such a task forever (the job hung); now after a few tries the wave runs
    its sources one by one and the culprit becomes a worker_crashed reject; the others pass."""
    import curate.pipeline as pipeline

    inp = tmp_path / "in"
    inp.mkdir()
    for name, pad in (("a.mp4", b""), ("kill.mp4", b"\0" * 16)):
        (inp / name).write_bytes(bikes_mp4.read_bytes() + pad)  # two sources, two ids

    def killer(batch, cfg, scratch):  # pickled by value: the workers run this one
        import os

        from curate.stages import filter_batch, split_batch

        if any(p.endswith("kill.mp4") for p in batch.column("source_path").to_pylist()):
            os._exit(1)  # the worker process dies, as under the OOM killer
        return filter_batch(split_batch(batch, cfg, scratch), cfg)

    monkeypatch.setattr(pipeline, "split_and_filter_batch", killer)
    m = run_curate([str(inp)], tmp_path / "out", CurateConfig(short_side=64))
    assert m["counts"]["sources_ok"] == 1 and m["counts"]["sources_failed"] == 1
    assert m["counts"]["clips_kept"] == 5
    [rej] = [r for r in read(tmp_path / "out", "rejects") if r["reason"] == "worker_crashed"]
    assert rej["source_path"].endswith("kill.mp4") and "died on every try" in rej["detail"]
