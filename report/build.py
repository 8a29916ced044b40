"""Build the dataset report of an ``OUT`` directory: ``report.json`` and ``index.html``.

Works on curate output alone (clips, rejects, manifest) and on recaptioned output (pairs).
Every number comes from Ray Data aggregations over the Parquet shards (see report.stats);
the driver holds only aggregates and a bounded gallery sample.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from common.config import ConfigError
from report import bias, captions, funnel, gallery, stats
from report.config import ReportConfig
from report.stats import GROUP_PARTITIONS, key, split_key

log = logging.getLogger(__name__)

NOT_NUMERIC = {"scene_index", "start_s", "end_s", "caption_words", "latent_c", "latent_t",
               "latent_h", "latent_w", "latent_frames", "latent_stride",
               "latent_pixel_height", "latent_pixel_width"}  # fmt: skip
NOT_CATEGORICAL = {"clip_id", "source_id", "source_path", "caption", "caption_short", "detail",
                   "kept_clip_id", "latent_dtype", "latent_codec", "latent_error", "path"}  # fmt: skip
CAPTION_CATEGORIES = ("caption_source", "caption_model_revision", "caption_prompt_version")


def _columns(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns worth a distribution, derived ones included."""
    numeric, categorical = [], []
    for f in schema:
        t = f.type
        if f.name in NOT_NUMERIC or f.name in NOT_CATEGORICAL or f.name in CAPTION_CATEGORIES:
            continue
        if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
            categorical.append(f.name)
        elif pa.types.is_list(t) and pa.types.is_string(t.value_type):
            categorical.append(f.name)
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            numeric.append(f.name)
    names = set(schema.names)
    if {"start_s", "end_s"} <= names:
        numeric.insert(0, "duration_s")
    if {"width", "height"} <= names:
        numeric.append("aspect_ratio")
        categorical.insert(0, "resolution")
    if "fps" in names:
        categorical.append("fps")
    return numeric, categorical


def _read_columns(schema: pa.Schema, wanted: set[str]) -> list[str]:
    base = {"start_s", "end_s", "width", "height", "caption", "caption_words", *CAPTION_CATEGORIES}
    return [n for n in schema.names if n in wanted | base and n != "video"]


def distributions(fs, files: list[str], cfg: ReportConfig, extra_keys=None, extra_cols=()) -> dict:
    """Histograms and category counts of a clips or pairs table (two passes), plus whatever
    ``extra_keys(batch)`` counts in the second pass (returned raw under ``extra``)."""
    schema = stats.common_schema(fs, files)
    numeric, categorical = _columns(schema)
    if "caption" in schema.names:
        numeric.append("caption_words_n")
    cols = _read_columns(schema, set(numeric) | set(categorical) | {"source_path", *extra_cols})
    kw = {"num_cpus": cfg.num_cpus, "batch_size": cfg.batch_size}
    ds = stats.read(fs, files, cols)
    st = stats.column_stats(ds, numeric, **kw)
    integer = {f.name for f in schema if pa.types.is_integer(f.type)} | {"caption_words_n"}
    edges = {c: stats.edges_for(st[c]["min"], st[c]["max"], cfg.bins, c in integer)
             for c in numeric if c in st}  # fmt: skip

    def fn(tbl: pa.Table) -> dict[str, float]:
        out = stats.hist_keys(tbl, edges)
        out.update(stats.value_count_keys(tbl, [*categorical, "source_path", *CAPTION_CATEGORIES]))
        if extra_keys is not None:
            out.update(extra_keys(tbl))
        return out

    counts = stats.count_keys(ds, fn, **kw)
    values = stats.assemble_values(counts)
    return {
        "rows": stats.num_rows(fs, files),
        "histograms": stats.assemble_histograms(counts, edges, st),
        "categories": {c: v for c, v in values.items() if c != "source_path"},
        "by_source": values.get("source_path", {}),
        "extra": counts,
    }


def reject_summary(fs, files: list[str], cats, cfg: ReportConfig) -> dict:
    """Counts by stage and reason, clip-level counts, per-source losses, measured values per
    reason, and the bias counters of caption-stage reject details."""
    from ray.data.aggregate import Count, Max, Mean, Min

    if not files:
        return {"by_stage": {}, "clip_level": 0, "unclipped": {}, "clips_by_source": {},
                "by_source": {}, "values": [], "bias": {}}  # fmt: skip
    names = stats.common_schema(fs, files).names
    cols = [
        c
        for c in ("source_path", "clip_id", "stage", "reason", "detail", "value", "start_s")
        if c in names
    ]
    ds = stats.read(fs, files, cols)
    kw = {"num_cpus": cfg.num_cpus, "batch_size": cfg.batch_size}

    def fn(tbl: pa.Table) -> dict[str, float]:
        out: dict[str, float] = {}
        src, stage, reason = (stats.strings(tbl, c) for c in ("source_path", "stage", "reason"))
        n = tbl.num_rows
        has_clip = tbl["clip_id"].is_valid().to_pylist() if "clip_id" in cols else [False] * n
        has_span = tbl["start_s"].is_valid().to_pylist() if "start_s" in cols else [False] * n
        for i, (p, s, r) in enumerate(zip(src, stage, reason, strict=True)):
            for k in (key("sr", s, r), key("src", p, s, r)):
                out[k] = out.get(k, 0.0) + 1
            if has_clip[i]:
                if s not in funnel.CAPTION_STAGES:
                    k = key("srcclip", p)
                    out[k] = out.get(k, 0.0) + 1
            elif s in funnel.CLIP_STAGES:  # no clip: a source failed whole, or footage lost
                k = key("nc", "footage" if has_span[i] else "source", s, r)
                out[k] = out.get(k, 0.0) + 1
        if "detail" in cols:
            cap = tbl.filter(pa.compute.equal(tbl["stage"], "caption"))
            if cap.num_rows:
                out.update(bias.bias_keys(cap, cats, "r", text_column="detail"))
        return out

    counts = stats.count_keys(ds, fn, **kw)
    by_stage: dict[str, dict[str, int]] = {}
    by_source: dict[str, dict[str, int]] = {}
    unclipped: dict[str, dict[str, dict[str, int]]] = {}
    clips_by_source: dict[str, int] = {}
    for k, n in counts.items():
        parts = split_key(k)
        if parts[0] == "srcclip":
            clips_by_source[parts[1]] = int(n)
        elif parts[0] == "sr":
            by_stage.setdefault(parts[1], {})[parts[2]] = int(n)
        elif parts[0] == "nc":
            unclipped.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = int(n)
        elif parts[0] == "src":
            by_source.setdefault(parts[1], {})[f"{parts[2]}/{parts[3]}"] = int(n)
    values = []
    if "value" in cols:
        agg = ds.groupby(["stage", "reason"], num_partitions=GROUP_PARTITIONS).aggregate(
            Count("value", ignore_nulls=True), Min("value"), Max("value"), Mean("value")
        )
        for r in agg.iter_rows():
            if r["count(value)"]:
                values.append({"stage": r["stage"], "reason": r["reason"], "n": int(r["count(value)"]),
                               "min": r["min(value)"], "max": r["max(value)"], "mean": r["mean(value)"]})  # fmt: skip
    order = {s: i for i, s in enumerate(funnel.STAGES)}
    by_stage = dict(sorted(by_stage.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))
    return {
        "by_stage": {
            s: dict(sorted(v.items(), key=lambda kv: -kv[1])) for s, v in by_stage.items()
        },
        "clip_level": sum(clips_by_source.values()),
        "unclipped": unclipped,
        "clips_by_source": clips_by_source,
        "by_source": by_source,
        "values": sorted(values, key=lambda v: (order.get(v["stage"], 99), v["reason"])),
        "bias": {k: v for k, v in counts.items() if k.startswith("r" + stats.SEP)},
    }


def per_source(
    kept: dict[str, int],
    lost: dict[str, dict[str, int]],
    top: int,
    clips_lost: dict[str, int],
) -> dict:
    """Which sources contribute what and which lose most to which rule, with Wilson intervals
    of each source's clip reject rate: ``clips_lost`` counts a source's curate rejects that name
    a clip (lost footage and failed splits are not clips; caption losses are counted apart)."""
    rows = []
    for src in set(kept) | set(lost):
        k = kept.get(src, 0)
        losses = lost.get(src, {})
        clip_lost = clips_lost.get(src, 0)
        rate = bias._rate(clip_lost, clip_lost + k)
        rows.append({"source": src, "kept": k, "rejected": sum(losses.values()),
                     "clip_reject_rate": rate, "rejects": dict(sorted(losses.items(), key=lambda kv: -kv[1]))})  # fmt: skip
    rows.sort(key=lambda r: (-r["kept"], -r["rejected"], r["source"]))
    worst: dict[str, dict[str, Any]] = {}
    for r in rows:
        for sr, n in r["rejects"].items():
            if n > worst.get(sr, {}).get("count", 0):
                worst[sr] = {"source": r["source"], "count": n}
    shown, rest = rows[:top], rows[top:]
    other = {"sources": len(rest), "kept": sum(r["kept"] for r in rest),
             "rejected": sum(r["rejected"] for r in rest)}  # fmt: skip
    return {"sources": len(rows), "rows": shown, "other": other, "most_lost_by_reason": worst}


def build_gallery(fs, files: dict[str, list[str]], cfg: ReportConfig) -> dict:
    """A bounded, seeded sample of kept clips (pairs when captioned) and of rejects per reason."""
    kw = {"num_cpus": cfg.num_cpus, "batch_size": cfg.batch_size, "seed": cfg.seed}
    kept_table = "pairs" if files["pairs"] else "clips"
    out: dict[str, Any] = {"kept_from": kept_table, "kept": [], "rejected": []}
    if files[kept_table]:
        names = stats.common_schema(fs, files[kept_table]).names
        cols = [c for c in names if c not in ("video", "clip_embedding", "phash", "latents")]
        rows = stats.bottom_k(stats.read(fs, files[kept_table], cols, paths=True), cfg.gallery_kept,
                              ["clip_id"], **kw)  # fmt: skip
        vids = stats.fetch_videos(fs, {r["clip_id"]: r["path"] for r in rows})
        out["kept"] = [gallery.card(r, vids.get(r["clip_id"]), cfg.thumb_frames, cfg.thumb_height)
                       for r in rows]  # fmt: skip
    if not files["rejects"] or cfg.gallery_per_reason <= 0:
        return out
    rnames = stats.common_schema(fs, files["rejects"]).names
    cols = [c for c in rnames if c != "video"]
    rows = stats.bottom_k(stats.read(fs, files["rejects"], cols, paths=True), cfg.gallery_per_reason,
                          ["clip_id", "source_path", "start_s"], ["stage", "reason"], **kw)  # fmt: skip
    own = {}
    if "video" in rnames:  # optional: a sample of rejected clip bytes kept by curate
        own = stats.fetch_videos(fs, {r["clip_id"]: r["path"] for r in rows if r.get("clip_id")})
    want = {r.get("clip_id") for r in rows} | {r.get("kept_clip_id") for r in rows}
    where: dict[str, str] = {}
    for t in ("clips", "pairs"):
        if files[t] and want - set(where):
            where.update(
                stats.locate(stats.read(fs, files[t], ["clip_id"], paths=True), want - set(where))
            )
    vids = stats.fetch_videos(fs, where)
    for r in rows:
        cid, note, video = r.get("clip_id"), "", None
        if cid in own:
            video = own[cid]
        elif cid in vids:
            video, note = vids[cid], "the clip as kept by curation (dropped later)"
        elif r.get("kept_clip_id") in vids:
            video, note = vids[r["kept_clip_id"]], "shows the kept clip this one duplicates"
        elif cid:
            note = (
                "rejects/ rows carry no video bytes: the reason, value and detail are what remain"
            )
        else:
            note = "failed before any clip was cut"
        out["rejected"].append(gallery.card(r, video, cfg.thumb_frames, cfg.thumb_height, note))
    return out


def lineage(manifest: dict, pairs_cats: dict[str, dict[str, int]]) -> dict:
    """Run id, config, code and schema versions, and the models named by config and pairs."""
    models: dict[str, Any] = {}

    def walk(d: Any, path: str) -> None:
        if isinstance(d, dict):
            for k, v in d.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(d, str) and any(
            w in path.split(".")[-1] for w in ("model", "pretrained", "encoder", "vae", "backend")
        ):
            models[path] = d

    walk(manifest.get("config"), "curate")
    rec = manifest.get("recaption")
    if isinstance(rec, dict):
        walk(rec.get("config"), "recaption")
    return {
        **{k: manifest.get(k) for k in ("run_id", "created_at", "code_version", "schema_version")},
        "config": manifest.get("config"),
        "recaption": {k: v for k, v in rec.items() if k != "config"}
        if isinstance(rec, dict)
        else None,
        "recaption_config": rec.get("config") if isinstance(rec, dict) else None,
        "models_in_config": models,
        **{c: pairs_cats.get(c, {}) for c in CAPTION_CATEGORIES},
    }


def build_report(out: str, output: str | None = None, cfg: ReportConfig | None = None,
                 address: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Compute the report of ``out`` and write ``report.json`` and ``index.html`` to ``output``
    (default ``OUT/report``); returns the JSON dict."""
    from common.raylib import init_ray
    from report import html, plots

    cfg = cfg or ReportConfig()
    if output is None and "://" in str(out):  # before any work
        raise ConfigError(f"{out} is remote: give --output, a local directory for the report")
    init_ray(address)
    fs, root = stats.open_out(out)
    files = {t: stats.list_parquet(fs, root, t) for t in ("clips", "rejects", "pairs", "sources")}
    if not any(files[t] for t in ("clips", "rejects", "pairs")):
        raise FileNotFoundError(
            f"{out}: no clips/, rejects/ or pairs/ Parquet files: run `spacetime curate` first"
        )
    try:
        with fs.open_input_stream(f"{root.rstrip('/')}/manifest.json") as f:
            manifest = json.loads(f.read())
    except (FileNotFoundError, OSError, ValueError) as e:
        log.warning(
            "no readable manifest.json in %s (%s): lineage and checks will be empty", out, e
        )
        manifest = {}
    cats = bias.load_terms(cfg.terms_dir)
    score_cols = tuple(cfg.group_score_columns)
    log.info(
        "report: clips %d, rejects %d, pairs %d file(s)",
        *(len(files[t]) for t in ("clips", "rejects", "pairs")),
    )
    kept_table = "clips" if files["clips"] else "pairs"
    clips = distributions(fs, files[kept_table], cfg) if files[kept_table] else None
    rej = reject_summary(fs, files["rejects"], cats, cfg)
    pairs = None
    if files["pairs"]:
        pairs = distributions(
            fs, files["pairs"], cfg, extra_cols=score_cols,
            extra_keys=lambda t: {**captions.ngram_keys(t, cfg.max_ngram),
                                  **bias.bias_keys(t, cats, "p", score_columns=score_cols)},
        )  # fmt: skip
    n_clips = clips["rows"] if clips else 0
    n_pairs = pairs["rows"] if pairs else None
    distinct = len(set(clips["by_source"] if clips else {}) | set(rej["by_source"]))
    fun = funnel.build_funnel(
        manifest, rej["by_stage"], n_clips, n_pairs,
        stats.num_rows(fs, files["sources"]) if files["sources"] else None, distinct, rej["clip_level"],
        rej["unclipped"],
    )  # fmt: skip
    report: dict[str, Any] = {
        "out": str(out),
        "report_config": _cfg_dict(cfg),
        "lineage": lineage(manifest, pairs["categories"] if pairs else {}),
        "funnel": fun,
        "rejects": {k: rej[k] for k in ("by_stage", "values")},
        "distributions": None if clips is None else {
            "table": kept_table, "rows": clips["rows"],
            "histograms": clips["histograms"], "categories": clips["categories"]},
        "sources": per_source(clips["by_source"] if clips else {}, rej["by_source"], cfg.max_sources,
                              rej["clips_by_source"]),
        "captions": None,
        "bias": None,
        "gallery": None,
    }  # fmt: skip
    if pairs:
        report["captions"] = {
            "pairs": pairs["rows"],
            "length_words": pairs["histograms"].get("caption_words_n"),
            "alignment": pairs["histograms"].get("alignment"),
            **{c: pairs["categories"].get(c, {}) for c in CAPTION_CATEGORIES},
            "ngrams": captions.top_ngrams(pairs["extra"], cfg.max_ngram, cfg.top_ngrams),
            "qa_rejects": rej["by_stage"].get("caption", {}),
        }
        report["bias"] = {
            **bias.summarize(
                {**pairs["extra"], **rej["bias"]}, cats, cfg.min_group_captions, score_cols
            ),
            "method": bias.METHOD,
        }
    report["bias_by_source"] = {"method": "clip reject rate per source: clip-level rejects / "
                                "(clip-level rejects + kept clips), 95% Wilson interval"}  # fmt: skip
    report["gallery"] = build_gallery(fs, files, cfg)
    dest = Path(output) if output else Path(str(out)) / "report"
    dest.mkdir(parents=True, exist_ok=True)
    figures = html.figures(report, plots)
    _write(dest / "report.json", json.dumps(_strip_images(report), indent=1, default=str))
    _write(dest / "index.html", html.render(report, figures))
    log.info("report written to %s", dest)
    return _strip_images(report)


def _cfg_dict(cfg: ReportConfig) -> dict[str, Any]:
    from common.config import to_dict

    return to_dict(cfg)


def _strip_images(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON copy: gallery thumbnails replaced by whether one was made."""
    out = dict(report)
    g = report.get("gallery")
    if g:
        out["gallery"] = {**g, **{k: [{**{a: b for a, b in c.items() if a != "thumb"}, "has_thumb": bool(c.get("thumb"))}
                                      for c in g[k]] for k in ("kept", "rejected")}}  # fmt: skip
    return out


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")  # index.html declares UTF-8, whatever the locale
    os.replace(tmp, path)
