"""Render the report as one self-contained HTML page (inline CSS and images; nothing fetched).

String templates with :func:`html.escape` on every value from the data.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any

from report.bias import METHOD

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0;background:#f5f6f8}
main{max-width:1120px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:36px 0 8px;border-bottom:2px solid #3b6ea8;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px} .muted{color:#667085} .small{font-size:12px}
nav{background:#f0f4fa;border:1px solid #d6e0ee;padding:10px 16px;margin:16px 0;columns:2}
nav a{display:block;color:#2a5a94;text-decoration:none;padding:1px 0} nav a:hover{text-decoration:underline}
table{border-collapse:collapse;margin:8px 0 14px;font-size:12.5px} th,td{border-bottom:1px solid #e4e7ec;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#f7f8fa;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0} .kpi{border:1px solid #e4e7ec;border-radius:6px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px} .grid{display:flex;flex-wrap:wrap;gap:12px} .grid figure{margin:0;border:1px solid #eef0f3;padding:4px}
.bad{color:#b42318;font-weight:600} .ok{color:#067647} .note{background:#fffaeb;border-left:4px solid #f79009;padding:8px 12px;white-space:pre-wrap;font-size:12.5px}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #e4e7ec;border-radius:6px;padding:8px;width:330px;font-size:12px}
.card img{max-width:100%;display:block;margin-bottom:6px} .card .why{color:#b42318;font-weight:600} .cap{font-style:italic}
pre{background:#f7f8fa;padding:8px;overflow:auto;max-height:360px;font-size:11.5px}
"""

SECTIONS = (
    ("summary", "Summary"), ("lineage", "Run lineage"), ("funnel", "Funnel"),
    ("rejects", "Reject reasons"), ("distributions", "Distributions"), ("sources", "Sources"),
    ("captions", "Captions"), ("bias", "Bias audit"), ("gallery", "Gallery"), ("about", "About this report"),
)  # fmt: skip


def _n(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return escape(str(v))


def _pct(r: dict[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "–"
    lo, hi = r["ci95"]
    return f"{r['rate']:.1%} <span class=muted>[{lo:.1%}, {hi:.1%}]</span>"


def _table(head: list[str], rows: list[list[Any]], raw: set[int] = frozenset()) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f"<td{' class=n' if num else ''}>{v if i in raw else _n(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def _img(uri: str | None, alt: str) -> str:
    return f'<figure><img src="{uri}" alt="{escape(alt)}"></figure>' if uri else ""


def figures(report: dict[str, Any], plots: Any) -> dict[str, str | None]:
    """Every plot of the page, as ``data:`` URIs."""
    f: dict[str, str | None] = {"funnel": plots.funnel(report["funnel"]["steps"])}
    for stage, reasons in report["funnel"]["rejects_by_stage"].items():
        f[f"rej:{stage}"] = plots.bars(
            list(reasons), list(reasons.values()), f"rejects at {stage}", color=plots.REJECT
        )
    d = report.get("distributions") or {}
    for c, h in (d.get("histograms") or {}).items():
        f[f"hist:{c}"] = plots.histogram(h, c)
    for c, v in (d.get("categories") or {}).items():
        top = list(v.items())[:15]
        f[f"cat:{c}"] = plots.bars([k for k, _ in top], [n for _, n in top], c)
    cap = report.get("captions") or {}
    if cap.get("length_words"):
        f["cap:len"] = plots.histogram(cap["length_words"], "caption length", "words")
    for n, rows in (cap.get("ngrams", {}).get("top") or {}).items():
        top = rows[:15]
        f[f"ng:{n}"] = plots.bars(
            [r["ngram"] for r in top], [r["count"] for r in top], f"top {n}-grams"
        )
    b = report.get("bias") or {}
    for name, c in (b.get("categories") or {}).items():
        if c["kind"] != "group" or not c["captions_with_any"]:
            continue
        rows = [{"label": g["group"], **g["share_of_captions"]} for g in c["groups"]]
        f[f"rep:{name}"] = plots.intervals(rows, f"{name}: share of captions (95% CI)")
    groups = {n: c for n, c in (b.get("categories") or {}).items()}
    for pair, rows in (b.get("cooccurrence") or {}).items():
        gc, cc = pair.split("~")
        gs = [g["group"] for g in groups.get(gc, {}).get("groups", []) if g["captions"]]
        cs = sorted({r["context"] for r in rows})
        rate = {(r["group"], r["context"]): r["rate"] or 0 for r in rows}
        f[f"co:{pair}"] = plots.heatmap([[rate.get((g, c), 0) for c in cs] for g in gs], gs, cs,
                                        f"{gc} × {cc}: share of the group's captions")  # fmt: skip
    src = [r for r in report["sources"]["rows"] if r["clip_reject_rate"]["n"]]
    f["src:rate"] = plots.intervals(
        [{"label": r["source"].rsplit("/", 1)[-1], **r["clip_reject_rate"]} for r in src[:30]],
        "clip reject rate by source (95% CI)", "reject rate")  # fmt: skip
    return f


def _summary(r: dict[str, Any]) -> str:
    steps = r["funnel"]["steps"]
    kpis = "".join(
        f"<div class=kpi><span class=muted>{escape(s['name'])}</span><b>{_n(s['count'])}</b></div>"
        for s in steps
    )
    checks = r["funnel"]["checks"]
    bad = [c for c in checks if not c["ok"]]
    rows = [[escape(c["what"]), escape(json.dumps(c["manifest"], sort_keys=True)), escape(json.dumps(c["data"], sort_keys=True)),
             '<span class=ok>agrees</span>' if c["ok"] else '<span class=bad>DIFFERS</span>'] for c in checks]  # fmt: skip
    verdict = (f'<p class=bad>{len(bad)} manifest count(s) disagree with the tables.</p>' if bad
               else "<p class=ok>The manifest's counts agree with the tables.</p>" if checks else
               "<p class=muted>No manifest counts to check.</p>")  # fmt: skip
    return kpis and f"<div class=kpis>{kpis}</div>{verdict}" + (
        _table(["check", "manifest", "tables", ""], rows, raw={0, 1, 2, 3}) if rows else ""
    )


def _lineage(r: dict[str, Any]) -> str:
    lin = r["lineage"]
    rows = [[k, lin.get(k)] for k in ("run_id", "created_at", "code_version", "schema_version")]
    rows += [[f"model: {k}", v] for k, v in lin["models_in_config"].items()]
    for c in ("caption_source", "caption_model_revision", "caption_prompt_version"):
        if lin.get(c):
            rows.append([c, ", ".join(f"{k} ({n:,})" for k, n in lin[c].items())])
    cfg = json.dumps({"curate": lin.get("config"), "recaption": lin.get("recaption_config"),
                      "recaption_run": lin.get("recaption")}, indent=1, default=str)  # fmt: skip
    return (
        _table(["", "value"], rows)
        + f"<details><summary>full config</summary><pre>{escape(cfg)}</pre></details>"
    )


def _funnel(r: dict[str, Any], f: dict) -> str:
    rows = []
    for s in r["funnel"]["steps"]:
        lost = "; ".join(
            f"{escape(str(st))}: " + ", ".join(f"{escape(k)} {n:,}" for k, n in v.items())
            for st, v in s["lost"].items()
        )
        rows.append(
            [
                escape(s["name"]),
                s["count"],
                s["lost_total"] or "",
                lost,
                escape(s.get("note") or ""),
            ]
        )
    return _img(f.get("funnel"), "funnel") + _table(
        ["step", "rows", "dropped after", "reasons", "note"], rows, raw={0, 3, 4}
    )


def _rejects(r: dict[str, Any], f: dict) -> str:
    rows = [[s, reason, n] for s, v in r["rejects"]["by_stage"].items() for reason, n in v.items()]
    if not rows:
        return "<p>No rejects.</p>"
    figs = "".join(_img(f.get(f"rej:{s}"), s) for s in r["rejects"]["by_stage"])
    vals = [
        [v["stage"], v["reason"], v["n"], v["min"], v["mean"], v["max"]]
        for v in r["rejects"]["values"]
    ]
    out = f"<div class=grid>{figs}</div>" + _table(["stage", "reason", "rows"], rows)
    if vals:
        out += "<h3>Measured values of dropped rows (the rule's input)</h3>" + _table(
            ["stage", "reason", "rows with a value", "min", "mean", "max"], vals
        )
    return out


def _distributions(r: dict[str, Any], f: dict) -> str:
    d = r.get("distributions")
    if not d:
        return "<p>No kept clips.</p>"
    hs = d["histograms"]
    rows = [
        [c, h["non_null"], h["total"], h["min"], h["mean"], h["std"], h["max"]]
        for c, h in hs.items()
    ]
    figs = "".join(_img(f.get(f"hist:{c}"), c) for c in hs)
    cats = "".join(_img(f.get(f"cat:{c}"), c) for c in d["categories"])
    return (f"<p class=muted>Kept rows of <code>{escape(d['table'])}/</code>: {d['rows']:,}. Fixed-width bins "
            f"between each column's min and max; nulls (a scorer that was off) are not plotted.</p>"
            + _table(["column", "non-null", "in histogram", "min", "mean", "std", "max"], rows)
            + f"<div class=grid>{figs}</div><h3>Categories</h3><div class=grid>{cats}</div>")  # fmt: skip


def _sources(r: dict[str, Any], f: dict) -> str:
    s = r["sources"]
    rows = [[escape(x["source"]), x["kept"], x["rejected"], _pct(x["clip_reject_rate"]),
             escape(", ".join(f"{k} {n:,}" for k, n in list(x["rejects"].items())[:4]))] for x in s["rows"]]  # fmt: skip
    o = s["other"]
    if o["sources"]:
        rows.append([f"<i>{o['sources']:,} other sources</i>", o["kept"], o["rejected"], "", ""])
    worst = [
        [escape(k), escape(v["source"]), v["count"]]
        for k, v in sorted(s["most_lost_by_reason"].items())
    ]
    return (f"<p>{s['sources']:,} sources contributed rows.</p>"
            + _table(["source", "kept", "rejected", "clip reject rate [95% CI]", "top reasons"], rows, raw={0, 3, 4})
            + _img(f.get("src:rate"), "reject rate by source")
            + "<h3>Which source loses most to each rule</h3>" + _table(["stage/reason", "source", "rows"], worst, raw={0, 1}))  # fmt: skip


def _captions(r: dict[str, Any], f: dict) -> str:
    c = r.get("captions")
    if not c:
        return (
            "<p>No pairs yet: run <code>spacetime recaption OUT</code> for caption statistics.</p>"
        )
    ng = c["ngrams"]
    mix = [[k, n] for k, n in c["caption_source"].items()]
    qa = [[k, n] for k, n in c["qa_rejects"].items()]
    lw = c.get("length_words") or {}
    figs = _img(f.get("cap:len"), "caption length") + "".join(
        _img(f.get(f"ng:{n}"), n) for n in ng["top"]
    )
    return (f"<p>{c['pairs']:,} pairs; vocabulary {ng['vocabulary_size']:,} words over {ng['tokens']:,} tokens; "
            f"caption length mean {_n(lw.get('mean'))} words (min {_n(lw.get('min'))}, max {_n(lw.get('max'))}).</p>"
            + "<div class=grid>" + _table(["caption_source", "pairs"], mix)
            + _table(["QA reject reason", "clips"], qa or [["(none)", 0]]) + "</div>"
            + f"<div class=grid>{figs}</div>")  # fmt: skip


ORDER = ("gender", "age", "skin_tone_ethnicity", "region", "language", "disability")


def _ordered(cats: dict[str, Any]) -> list[tuple[str, Any]]:
    """Packaged categories in a fixed order, then any others by name."""
    return sorted(
        cats.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0])
    )


def _bias(r: dict[str, Any], f: dict) -> str:
    b = r.get("bias")
    out = f"<div class=note>{escape(METHOD)}</div>"
    if not b:
        return out + "<p>No captions: only the by-source reject rates (Sources) apply.</p>"
    out += f"<p>{b['captions']:,} captions audited; {b['caption_rejects_with_text']:,} caption-stage rejects with text.</p>"
    for name, c in _ordered(b["categories"]):
        if c["kind"] != "group":
            continue
        if not c["captions_with_any"]:
            out += (
                f"<h3>{escape(name)}</h3><p class='muted small'>{escape(c['description'])}</p><p>No caption "
                f"mentions any of the {sum(len(g['terms']) for g in c['groups'])} terms of this category.</p>"
            )
            continue
        rows = []
        for g in c["groups"]:
            means = ", ".join(
                f"{k} {v['mean']:.3g}"
                for k, v in (g.get("score_means") or {}).items()
                if v["mean"] is not None
            )
            rows.append([escape(g["group"]) + (" <span class=muted>(small)</span>" if g["small"] else ""), g["captions"],
                         g["mentions"], _pct(g["share_of_captions"]), _pct(g["share_within_category"]),
                         _pct(g["caption_reject_rate"]), escape(means)])  # fmt: skip
        out += (f"<h3>{escape(name)}</h3><p class='muted small'>{escape(c['description'])} "
                f"Captions mentioning any term: {c['captions_with_any']:,} ({_pct(c['share_with_any'])}).</p>"
                + _img(f.get(f"rep:{name}"), name)
                + _table(["group", "captions", "mentions", "share of captions", "share within category",
                          "caption reject rate", "mean scores"], rows, raw={0, 3, 4, 5}))  # fmt: skip
    overall = ", ".join(
        f"{k} {v['mean']:.3g}" for k, v in b["score_means_overall"].items() if v["mean"] is not None
    )
    if overall:
        out += f"<p class=small>Mean scores over all captions: {escape(overall)}.</p>"
    out += "<h3>Co-occurrence with activities, settings and occupations</h3>"
    for pair, rows in b["cooccurrence"].items():
        out += _img(f.get(f"co:{pair}"), pair)
        top = [
            [escape(x["group"]), escape(x["context"]), x["k"], _pct(x), _n(x["overall_rate"])]
            for x in rows[:20]
        ]
        out += f"<details><summary>{escape(pair)} (top rows)</summary>" + _table(
            ["group", "context", "captions", "share of the group's captions", "share of all captions"], top,
            raw={0, 1, 3}) + "</details>"  # fmt: skip
    return out + "<p>Uneven filtering by source: see <a href='#sources'>Sources</a>.</p>"


def _gallery(r: dict[str, Any]) -> str:
    g = r.get("gallery") or {}

    def cards(items: list[dict[str, Any]]) -> str:
        out = []
        for c in items:
            img = (
                f'<img src="{c["thumb"]}" alt="frames of {escape(str(c.get("clip_id")))}">'
                if c.get("thumb")
                else ""
            )
            why = (
                f"<div class=why>{escape(c['stage'])} / {escape(c['reason'])}</div>"
                if c.get("reason")
                else ""
            )
            det = f"<div>{escape(str(c['detail']))}</div>" if c.get("detail") else ""
            cap = f"<div class=cap>“{escape(c['caption'])}”</div>" if c.get("caption") else ""
            sc = ", ".join(f"{k} {_n(v)}" for k, v in c.get("scores", {}).items())
            span = (
                f"{c['start_s']:.2f}–{c['end_s']:.2f}s"
                if c.get("start_s") is not None and c.get("end_s") is not None
                else ""
            )
            note = (
                f"<div class='muted small'>{escape(c['thumb_note'])}</div>"
                if c.get("thumb_note")
                else ""
            )
            out.append(f"<div class=card>{img}{why}{det}{cap}<div class=small>{escape(sc)}</div>"
                       f"<div class='muted small'>{escape(str(c.get('source_path', '')))} {span}<br>"
                       f"{escape(str(c.get('clip_id') or ''))}</div>{note}</div>")  # fmt: skip
        return f"<div class=cards>{''.join(out)}</div>" if out else "<p>None.</p>"

    return (f"<h3>Kept ({escape(str(g.get('kept_from')))}, seeded sample)</h3>" + cards(g.get("kept", []))
            + "<h3>Rejected (sample per stage and reason)</h3>" + cards(g.get("rejected", [])))  # fmt: skip


def render(report: dict[str, Any], figs: dict[str, str | None]) -> str:
    """The whole page."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    toc = "".join(f'<a href="#{a}">{i}. {escape(t)}</a>' for i, (a, t) in enumerate(SECTIONS, 1))
    body = {
        "summary": _summary(report), "lineage": _lineage(report), "funnel": _funnel(report, figs),
        "rejects": _rejects(report, figs), "distributions": _distributions(report, figs),
        "sources": _sources(report, figs), "captions": _captions(report, figs), "bias": _bias(report, figs),
        "gallery": _gallery(report),
        "about": "<p>Computed with Ray Data aggregations over the Parquet shards (video bytes never read "
                 "except for the gallery sample). The same numbers are in <code>report.json</code>.</p>"
                 f"<pre>{escape(json.dumps(report['report_config'], indent=1))}</pre>",
    }  # fmt: skip
    secs = "".join(f'<section id="{a}"><h2>{i}. {escape(t)}</h2>{body[a]}</section>'
                   for i, (a, t) in enumerate(SECTIONS, 1))  # fmt: skip
    run = escape(str(report["lineage"].get("run_id") or "(no manifest)"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>spacetime dataset report — {run}</title>'
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body><main>"
            f"<h1>Dataset report</h1><p class=muted>{escape(report['out'])} · run {run} · generated {now}</p>"
            f"<nav>{toc}</nav>{secs}</main></body></html>")  # fmt: skip
