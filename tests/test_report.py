"""``spacetime report``: numbers equal direct pyarrow counts, clips-only and pairs inputs, a
self-contained page that headless Chromium renders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from schemas.validate import rows_to_table, write_table

SOURCES = [f"/footage/src_{i}.mp4" for i in range(3)]
CAPTIONS = [
    "A woman walks a dog in a park. The woman smiles.",
    "A man cooks in a kitchen while many people watch.",
    "A red circle moves left over a dark background.",
    "An old man reads a newspaper on a bench in the park.",
    "A girl and a boy are playing soccer on a field.",
    "A chef chops onions in a restaurant kitchen.",
]


def _videos() -> list[bytes]:
    from common.video import encode_mp4
    from curate.synthetic import Shot, render_shot

    out = []
    for i, (color, direction) in enumerate([("red", "left"), ("blue", "right"), ("green", "up")]):
        shot = Shot(kind="shape", seconds=1.0, color=color, direction=direction, background=i)
        frames = np.stack(list(render_shot(shot, 48, 32, 8.0)))
        out.append(encode_mp4(frames, 8.0))
    return out


def make_out(root: Path, with_pairs: bool = True, n_clips: int = 24) -> Path:
    """An OUT dir: clips (2 shards), rejects (curate + caption), pairs, manifest.json."""
    rng = np.random.default_rng(0)
    vids = _videos()
    out = root
    for d in ("clips", "rejects", "pairs"):
        (out / d).mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n_clips):
        src = SOURCES[i % 3] if i % 5 else SOURCES[0]
        start = float(i)
        clips.append({
            "clip_id": f"clip{i:03d}", "source_id": f"sid{SOURCES.index(src)}", "source_path": src,
            "scene_index": i, "start_s": start, "end_s": start + 1.0 + (i % 4) * 0.5,
            "fps": 8.0 if i % 2 else 12.0, "num_frames": 8, "width": 48 if i % 3 else 64,
            "height": 32, "video": vids[i % 3],
            "motion": float(rng.uniform(0, 5)), "sharpness": float(rng.uniform(10, 500)),
            "luma_mean": float(rng.uniform(20, 200)), "dark_frac": float(rng.uniform(0, 0.5)),
            "bright_frac": float(rng.uniform(0, 0.2)), "colorfulness": float(rng.uniform(0, 80)),
            "is_black": False, "is_frozen": i % 7 == 0,
            "camera_motion": ["static", "pan_left", "zoom_in", None][i % 4],
            "aesthetic": None if i % 3 == 0 else float(rng.uniform(3, 7)),
            "dominant_colors": ["red", "gray"] if i % 2 else ["blue"],
        })  # fmt: skip
    half = n_clips // 2
    write_table(
        rows_to_table(clips[:half], "clips"), str(out / "clips/part-00000.parquet"), "clips"
    )
    write_table(
        rows_to_table(clips[half:], "clips"), str(out / "clips/part-00001.parquet"), "clips"
    )
    rejects = [
        {"source_path": "/footage/broken.mp4", "stage": "source", "reason": "unreadable_source",
         "detail": "moov atom not found"},
        {"source_path": SOURCES[1], "source_id": "sid1", "clip_id": None, "stage": "scenes",
         "reason": "too_short", "detail": "0.4 s < 1.0 s <script>alert(1)</script>", "start_s": 50.0, "end_s": 50.4},
    ]  # fmt: skip
    for j in range(5):
        rejects.append({"source_path": SOURCES[j % 2], "source_id": f"sid{j % 2}", "clip_id": f"rj{j}",
                        "stage": "filter", "reason": "too_dark" if j < 3 else "low_motion",
                        "detail": "luma below threshold", "value": 5.0 + j, "start_s": 60.0 + j,
                        "end_s": 61.0 + j})  # fmt: skip
    rejects.append({"source_path": SOURCES[2], "source_id": "sid2", "clip_id": "dup0", "stage": "dedup",
                    "reason": "near_duplicate", "kept_clip_id": "clip002", "value": 3.0})  # fmt: skip
    # past the probe, without a clip: a source whose split timed out (no span), footage lost
    # from a source that was split (a span), and a clip that failed to encode
    rejects += [
        {"source_path": "/footage/hang.mp4", "source_id": "sid9", "stage": "clip",
         "reason": "decode_timeout", "detail": "split took over 60 s"},
        {"source_path": SOURCES[0], "source_id": "sid0", "stage": "clip", "reason": "truncated_stream",
         "detail": "decoded 3.00s of 9.00s", "start_s": 3.0, "end_s": 9.0},
        {"source_path": SOURCES[1], "source_id": "sid1", "clip_id": "enc0", "stage": "clip",
         "reason": "encode_failed", "detail": "x264 error", "start_s": 70.0, "end_s": 71.0},
    ]  # fmt: skip
    curate_rejects = list(rejects)
    write_table(
        rows_to_table(rejects, "rejects"), str(out / "rejects/part-00000.parquet"), "rejects"
    )
    cap_rej = []
    pairs = []
    if with_pairs:
        cap_rej = [
            {"source_path": clips[-1]["source_path"], "clip_id": clips[-1]["clip_id"], "stage": "caption",
             "reason": "refusal", "detail": "I'm sorry, I cannot describe the woman in this video"},
            {"source_path": clips[-2]["source_path"], "clip_id": clips[-2]["clip_id"], "stage": "caption",
             "reason": "too_short", "detail": "3 words < min_words 8", "value": 3.0},
        ]  # fmt: skip
        write_table(
            rows_to_table(cap_rej, "rejects"),
            str(out / "rejects/caption-r1-00000.parquet"),
            "rejects",
        )
        for i, c in enumerate(clips[: n_clips - 4]):
            cap = CAPTIONS[i % len(CAPTIONS)]
            pairs.append({**c, "caption": cap, "caption_source": "attributes" if i % 4 else "Qwen/Tiny",
                          "caption_model_revision": None if i % 4 else "abc123",
                          "caption_words": len(cap.split()), "alignment": float(rng.uniform(0.1, 0.4))})  # fmt: skip
        write_table(
            rows_to_table(pairs, "pairs"), str(out / "pairs/part-r1-00000.parquet"), "pairs"
        )
    by_reason: dict[str, dict[str, int]] = {}
    for r in curate_rejects:
        by_reason.setdefault(r["stage"], {}).setdefault(r["reason"], 0)
        by_reason[r["stage"]][r["reason"]] += 1
    manifest = {
        "run_id": "test-run-1", "created_at": "2025-01-01T00:00:00+00:00", "code_version": "0.1+gabc",
        "schema_version": "1", "config": {"short_side": 128, "scorers": {"aesthetic_model": "none"}},
        "counts": {"sources_seen": 5, "sources_ok": 3, "sources_failed": 2, "clips_kept": n_clips,
                   "clips_rejected": sum(1 for r in curate_rejects if r.get("clip_id"))},
        "rejects_by_reason": by_reason,
    }  # fmt: skip
    if with_pairs:
        manifest["recaption"] = {
            "config": {"backend": "attributes", "model": None},
            "counts": {"clips_seen": n_clips, "pairs": len(pairs), "caption_rejected": len(cap_rej),
                       "pending": n_clips - len(pairs) - len(cap_rej)},
            "rejects_by_reason": dict(Counter(r["reason"] for r in cap_rej)),
        }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory, ray_session):
    """One OUT with pairs, reported through the CLI."""
    from spacetime_cli import main

    out = make_out(tmp_path_factory.mktemp("report_out"))
    assert (
        main(["report", str(out), "--set", "gallery_kept=4", "--set", "gallery_per_reason=2"]) == 0
    )
    return out, json.loads((out / "report" / "report.json").read_text())


def _read(out: Path, table: str):
    return pq.ParquetDataset(sorted(str(p) for p in (out / table).glob("*.parquet"))).read()


def test_funnel_and_reasons_equal_pyarrow_counts(built):
    out, rep = built
    clips, rejects, pairs = _read(out, "clips"), _read(out, "rejects"), _read(out, "pairs")
    steps = {s["name"]: s for s in rep["funnel"]["steps"]}
    assert steps["clips kept"]["count"] == clips.num_rows
    assert steps["captioned"]["count"] == pairs.num_rows
    assert steps["sources seen"]["count"] == 5 and steps["sources ok"]["count"] == 3
    # a failed split is a failed source, lost footage is not a clip: clips cut = kept + the
    # rejects that name a clip (the manifest's clips_rejected)
    assert steps["sources seen"]["lost"] == {
        "source": {"unreadable_source": 1},
        "clip": {"decode_timeout": 1},
    }
    assert steps["sources ok"]["lost"] == {"clip": {"truncated_stream": 1}}
    assert steps["clips cut"]["lost"]["clip"] == {"encode_failed": 1}
    named = sum(1 for c, st in zip(rejects["clip_id"].to_pylist(), rejects["stage"].to_pylist(),
                                   strict=True) if c is not None and st != "caption")  # fmt: skip
    assert steps["clips cut"]["count"] == clips.num_rows + named
    # per source, the clip reject rate counts the rejects that name a clip (not lost footage)
    rej_rows = rejects.to_pylist()
    for row in rep["sources"]["rows"]:
        named = [r for r in rej_rows if r["source_path"] == row["source"]
                 and r["clip_id"] is not None and r["stage"] != "caption"]  # fmt: skip
        assert row["clip_reject_rate"]["k"] == len(named), row["source"]
        assert row["clip_reject_rate"]["n"] == len(named) + row["kept"], row["source"]
    expected: dict[str, dict[str, int]] = {}
    for s, r in zip(rejects["stage"].to_pylist(), rejects["reason"].to_pylist(), strict=True):
        expected.setdefault(s, {}).setdefault(r, 0)
        expected[s][r] += 1
    assert rep["rejects"]["by_stage"] == expected
    assert steps["clips kept"]["lost"] == {"caption": expected["caption"]}
    assert rep["funnel"]["pending_caption"] == clips.num_rows - pairs.num_rows - 2
    assert rep["funnel"]["checks"] and all(c["ok"] for c in rep["funnel"]["checks"]), rep["funnel"][
        "checks"
    ]
    values = {(v["stage"], v["reason"]): v for v in rep["rejects"]["values"]}
    assert values[("filter", "too_dark")]["n"] == 3 and values[("filter", "too_dark")]["max"] == 7.0


def test_histograms_and_categories_equal_pyarrow_counts(built):
    out, rep = built
    clips = _read(out, "clips")
    hs = rep["distributions"]["histograms"]
    for col in ("motion", "sharpness", "aesthetic", "luma_mean", "fps", "width", "num_frames"):
        nn = clips.num_rows - clips[col].null_count
        assert hs[col]["total"] == hs[col]["non_null"] == nn, col
        assert hs[col]["min"] == pytest.approx(pc.min(clips[col]).as_py())
        assert len(hs[col]["edges"]) == len(hs[col]["counts"]) + 1
    assert hs["aesthetic"]["total"] < clips.num_rows  # nulls are not binned
    assert hs["duration_s"]["total"] == clips.num_rows
    assert hs["duration_s"]["max"] == pytest.approx(2.5)
    assert "nsfw" not in hs or hs["nsfw"]["total"] == 0
    cats = rep["distributions"]["categories"]
    cm = Counter("(null)" if v is None else v for v in clips["camera_motion"].to_pylist())
    assert cats["camera_motion"] == dict(cm)
    res = Counter(
        f"{w}x{h}"
        for w, h in zip(clips["width"].to_pylist(), clips["height"].to_pylist(), strict=True)
    )
    assert cats["resolution"] == dict(res)
    colors = Counter(c for lst in clips["dominant_colors"].to_pylist() for c in lst)
    assert cats["dominant_colors"] == dict(colors)
    kept_by_src = Counter(clips["source_path"].to_pylist())
    assert {r["source"]: r["kept"] for r in rep["sources"]["rows"] if r["kept"]} == dict(
        kept_by_src
    )


def test_captions_and_bias_from_pairs(built):
    out, rep = built
    pairs = _read(out, "pairs")
    cap = rep["captions"]
    assert cap["pairs"] == pairs.num_rows
    assert cap["caption_source"] == dict(Counter(pairs["caption_source"].to_pylist()))
    assert cap["length_words"]["total"] == pairs.num_rows
    assert cap["qa_rejects"] == {"refusal": 1, "too_short": 1}
    top_words = {r["ngram"]: r["count"] for r in cap["ngrams"]["top"]["1"]}
    texts = pairs["caption"].to_pylist()
    assert top_words["park"] == sum(t.lower().count("park") for t in texts)
    gender = {g["group"]: g for g in rep["bias"]["categories"]["gender"]["groups"]}
    # "man" appears in CAPTIONS[1] and [3] ("old man"); "many"/"woman" must not count as male
    n_male = sum(1 for t in texts if t.startswith(("A man", "An old man")) or " boy " in t)
    assert gender["male"]["captions"] == n_male
    assert gender["female"]["captions"] == sum(1 for t in texts if "woman" in t or "girl" in t)
    assert gender["female"]["caption_reject_rate"]["k"] == 1  # the refusal mentions "the woman"
    lo, hi = gender["male"]["share_of_captions"]["ci95"]
    assert lo < n_male / pairs.num_rows < hi
    assert rep["bias"]["method"] and "Wilson" in rep["bias"]["method"]


def test_gallery_thumbnails_and_notes(built):
    _, rep = built
    g = rep["gallery"]
    assert g["kept_from"] == "pairs" and len(g["kept"]) == 4
    assert all(c["has_thumb"] and c.get("caption") for c in g["kept"])
    by = {(c["stage"], c["reason"]): c for c in g["rejected"]}
    assert by[("caption", "refusal")]["has_thumb"]  # the clip is still in clips/
    assert by[("dedup", "near_duplicate")]["has_thumb"]  # shows the kept representative
    assert not by[("filter", "too_dark")]["has_thumb"] and by[("filter", "too_dark")]["thumb_note"]
    assert sum(1 for c in g["rejected"] if c["reason"] == "too_dark") == 2


def test_page_is_self_contained_and_escaped(built):
    out, _ = built
    page = (out / "report" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a reject's detail, shown escaped
    assert "<script" not in page
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") > 10
    for anchor in ("funnel", "distributions", "bias", "gallery", "lineage"):
        assert f'id="{anchor}"' in page and f'href="#{anchor}"' in page
    assert "test-run-1" in page


def test_clips_only_before_recaption(tmp_path, ray_session):
    from report.build import build_report
    from report.config import ReportConfig

    out = make_out(tmp_path / "out", with_pairs=False)
    rep = build_report(
        str(out), str(tmp_path / "rep"), ReportConfig(gallery_kept=2, gallery_per_reason=1)
    )
    assert rep["captions"] is None and rep["bias"] is None
    assert [s["name"] for s in rep["funnel"]["steps"]][-1] == "clips kept"
    assert all(c["ok"] for c in rep["funnel"]["checks"])
    assert rep["gallery"]["kept_from"] == "clips" and all(
        c["has_thumb"] for c in rep["gallery"]["kept"]
    )
    assert (tmp_path / "rep" / "index.html").stat().st_size > 10_000
    # a different seed picks a different, equally sized sample; the same seed the same one
    again = build_report(
        str(out), str(tmp_path / "rep2"), ReportConfig(gallery_kept=2, gallery_per_reason=1)
    )
    assert [c["clip_id"] for c in again["gallery"]["kept"]] == [
        c["clip_id"] for c in rep["gallery"]["kept"]
    ]


_APT_MARK = Path("/tmp/.spacetime-report-chromium-apt-tried")


def find_chromium() -> str | None:
    """A headless-capable Chromium on PATH; where absent, as root with apt, try installing once."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get") and not _APT_MARK.exists():
        _APT_MARK.touch()
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=600)
        return shutil.which("chromium")
    return None


def test_page_renders_in_headless_chromium(built, tmp_path):
    from PIL import Image

    out, _ = built
    exe = find_chromium()
    if not exe:
        pytest.skip("no chromium/chromium-browser/google-chrome on PATH (and apt-get install chromium "
                    "was not possible): the page was not rendered")  # fmt: skip
    shot = tmp_path / "page.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={shot}", "--window-size=1200,2000", (out / "report" / "index.html").as_uri()]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.exists(), "chromium wrote no screenshot"
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (2000, 1200)
    assert img.var() > 100, "the screenshot is (almost) blank"
    assert (img < 200).mean() > 0.01, "the screenshot is (almost) all white"


def test_odd_names_paths_and_settings(tmp_path, ray_session, monkeypatch):
    """File names with '$' (matplotlib math) and an OUT under a '.tmp' folder; a stray copy of a
    shard in a hidden folder counts in neither the rows nor the histograms; a remote OUT needs
    --output; out-of-range settings are refused; the page is UTF-8 whatever the locale."""
    import shutil

    from common.config import ConfigError
    from report.build import build_report
    from report.config import ReportConfig

    monkeypatch.setattr(sys.modules[__name__], "SOURCES",
                        ["/footage/sale_$5_off_$10.mp4", "/footage/a$b_c_d$.mp4", "/f/c.mp4"])  # fmt: skip
    out = make_out(tmp_path / "x.tmp" / "out", with_pairs=False)
    first = sorted((out / "clips").glob("*.parquet"))[0]
    (out / "clips" / ".ipynb_checkpoints").mkdir()
    shutil.copy(first, out / "clips" / ".ipynb_checkpoints" / first.name)
    rep = build_report(str(out), str(tmp_path / "rep"), ReportConfig(gallery_kept=1))
    kept = next(s for s in rep["funnel"]["steps"] if s["name"] == "clips kept")
    assert kept["count"] == 24 and all(c["ok"] for c in rep["funnel"]["checks"])
    assert rep["distributions"]["rows"] == 24
    assert rep["distributions"]["histograms"]["motion"]["total"] == 24
    assert "sale_$5_off_$10.mp4" in (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="is remote: give --output"):
        build_report(f"file://{out}", None, ReportConfig())
    for bad in ({"bins": 0}, {"thumb_frames": 0}, {"bins": -3}):
        with pytest.raises(ConfigError, match="out of range"):
            ReportConfig(**bad)


def test_sources_seen_is_checked_against_the_sources_table():
    from report.funnel import build_funnel

    manifest = {"counts": {"sources_seen": 4, "sources_ok": 3, "sources_failed": 1}}
    checks = {c["what"]: c for c in build_funnel(manifest, {}, 0, None, 3)["checks"]}
    assert checks["sources_seen = rows of sources/"]["ok"] is False
    assert checks["sources_seen = rows of sources/"]["data"] == 3
    only = build_funnel(manifest, {}, 0, None, None)["checks"]
    assert [c["what"] for c in only] == [
        "sources_seen = sources_ok + sources_failed + sources_duplicate (manifest only)"
    ]
    # a manifest from before sources_duplicate counted duplicates as failed: still consistent
    assert only[0]["ok"] is True
    dup = {
        "counts": {"sources_seen": 4, "sources_ok": 2, "sources_failed": 1, "sources_duplicate": 1}
    }
    assert build_funnel(dup, {}, 0, None, None)["checks"][0]["ok"] is True
