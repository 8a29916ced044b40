"""Bias audit of captions: who and what they describe, with what, and who the filters drop.

Term lists are YAML files (``report/terms/*.yaml``, see its README for sources and method):
a category (``gender``, ``age``, …) of ``kind`` ``group`` (people descriptors audited for
representation) or ``context`` (activities, settings, occupations: co-occurrence targets),
mapping group names to terms. A term matches a whole word or phrase, case-insensitively:
``man`` matches "a man's hat" but not "many", "woman" or "manhole"; a phrase's words may be
separated by any whitespace. A caption counts once per group however often it says a term
(``mentions`` counts every occurrence).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from report.stats import key, split_key

TERMS_DIR = Path(__file__).resolve().parent / "terms"
"""The packaged term lists."""

KINDS = ("group", "context")


class TermsError(ValueError):
    """A term list file is malformed."""


@dataclass(frozen=True)
class Category:
    """One term list: its groups, and a compiled pattern over all of its terms."""

    name: str
    kind: str
    description: str
    groups: dict[str, tuple[str, ...]]
    pattern: re.Pattern[str]
    lookup: dict[str, str]

    def match(self, text: str) -> dict[str, int]:
        """``{group: mentions}`` of the groups ``text`` mentions."""
        out: dict[str, int] = {}
        for m in self.pattern.finditer(text.lower()):
            g = self.lookup[" ".join(m.group(0).split())]
            out[g] = out.get(g, 0) + 1
        return out


def _norm(term: str) -> str:
    return " ".join(str(term).lower().split())


def make_category(
    name: str, kind: str, groups: dict[str, list[str]], description: str = ""
) -> Category:
    """Compile a category; a term may belong to one group only."""
    if kind not in KINDS:
        raise TermsError(f"category {name!r}: kind must be one of {KINDS}, got {kind!r}")
    if not groups:
        raise TermsError(f"category {name!r}: no groups")
    lookup: dict[str, str] = {}
    clean: dict[str, tuple[str, ...]] = {}
    for g, terms in groups.items():
        if not isinstance(terms, (list, tuple)) or not terms:
            raise TermsError(f"category {name!r}, group {g!r}: expected a non-empty list of terms")
        normed = tuple(dict.fromkeys(_norm(t) for t in terms if _norm(t)))
        for t in normed:
            if t in lookup and lookup[t] != g:
                raise TermsError(f"category {name!r}: term {t!r} is in {lookup[t]!r} and {g!r}")
            lookup[t] = str(g)
        clean[str(g)] = normed
    alts = sorted(lookup, key=lambda t: (-len(t), t))  # longest first: "old man" before "man"
    body = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in alts)
    pattern = re.compile(rf"(?<![\w])(?:{body})(?![\w])")
    return Category(name, kind, description.strip(), clean, pattern, lookup)


def load_file(path: Path) -> Category:
    """One YAML term list."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise TermsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict) or "groups" not in data:
        raise TermsError(f"{path}: expected a mapping with 'category', 'kind' and 'groups'")
    name = str(data.get("category") or path.stem)
    return make_category(
        name, str(data.get("kind", "group")), data["groups"], data.get("description", "")
    )


def load_terms(extra_dir: str | Path | None = None) -> dict[str, Category]:
    """The packaged categories, overlaid by ``extra_dir``'s (same name replaces)."""
    cats: dict[str, Category] = {}
    dirs = [TERMS_DIR] + ([Path(extra_dir)] if extra_dir else [])
    for d in dirs:
        if not d.is_dir():
            raise TermsError(f"terms directory {d} does not exist")
        for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            c = load_file(f)
            cats[c.name] = c
    return cats


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion k/n (95% by default); (None, None) when n = 0."""
    if n <= 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bias_keys(
    tbl: pa.Table,
    cats: dict[str, Category],
    prefix: str,
    text_column: str = "caption",
    score_columns: tuple[str, ...] = (),
) -> dict[str, float]:
    """Counter keys of one batch: captions, group presence and mentions, co-occurrence with
    context groups, and per-group score sums (for group means)."""
    out: dict[str, float] = {}

    def add(k: str, v: float = 1.0) -> None:
        out[k] = out.get(k, 0.0) + v

    if text_column not in tbl.column_names:
        return out
    texts = tbl[text_column].to_pylist()
    scores = {c: tbl[c].to_pylist() for c in score_columns if c in tbl.column_names}
    gcats = [c for c in cats.values() if c.kind == "group"]
    ccats = [c for c in cats.values() if c.kind == "context"]
    for i, text in enumerate(texts):
        if not text:
            continue
        add(key(prefix, "n"))
        found: dict[str, dict[str, int]] = {c.name: c.match(text) for c in cats.values()}
        for col, vals in scores.items():
            v = vals[i]
            if v is not None and math.isfinite(v):
                add(key(prefix, "ss", "*", "*", col), float(v))
                add(key(prefix, "sn", "*", "*", col))
        for c in cats.values():
            if found[c.name]:
                add(key(prefix, "any", c.name))
            for g, m in found[c.name].items():
                add(key(prefix, "g", c.name, g))
                add(key(prefix, "m", c.name, g), m)
        for gc in gcats:
            for g in found[gc.name]:
                for col, vals in scores.items():
                    v = vals[i]
                    if v is not None and math.isfinite(v):
                        add(key(prefix, "ss", gc.name, g, col), float(v))
                        add(key(prefix, "sn", gc.name, g, col))
                for cc in ccats:
                    for c in found[cc.name]:
                        add(key(prefix, "co", gc.name, g, cc.name, c))
    return out


def _rate(k: float, n: float) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"k": int(k), "n": int(n), "rate": (k / n) if n else None, "ci95": [lo, hi]}


def summarize(
    counts: dict[str, float],
    cats: dict[str, Category],
    min_captions: int = 5,
    score_columns: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The audit from counter keys: representation, co-occurrence, caption-stage reject rates
    by group and score means by group. ``p`` keys are pairs, ``r`` keys caption rejects."""
    n_pairs = counts.get(key("p", "n"), 0.0)
    n_rej = counts.get(key("r", "n"), 0.0)
    groups_out: dict[str, Any] = {}
    for c in cats.values():
        any_c = counts.get(key("p", "any", c.name), 0.0)
        rows = []
        for g, terms in c.groups.items():
            k = counts.get(key("p", "g", c.name, g), 0.0)
            rk = counts.get(key("r", "g", c.name, g), 0.0)
            row = {
                "group": g,
                "terms": list(terms),
                "captions": int(k),
                "mentions": int(counts.get(key("p", "m", c.name, g), 0.0)),
                "share_of_captions": _rate(k, n_pairs),
                "share_within_category": _rate(k, any_c),
                "caption_reject_rate": _rate(rk, rk + k),
                "small": k < min_captions,
            }
            if c.kind == "group" and score_columns:
                row["score_means"] = {col: _mean(counts, c.name, g, col) for col in score_columns}
            rows.append(row)
        rows.sort(key=lambda r: (-r["captions"], r["group"]))
        groups_out[c.name] = {
            "kind": c.kind,
            "description": c.description,
            "captions_with_any": int(any_c),
            "share_with_any": _rate(any_c, n_pairs),
            "groups": rows,
        }
    co: dict[str, Any] = {}
    for k, v in counts.items():
        parts = split_key(k)
        if len(parts) == 6 and parts[0] == "p" and parts[1] == "co":
            _, _, gc, g, cc, c = parts
            denom = counts.get(key("p", "g", gc, g), 0.0)
            co.setdefault(f"{gc}~{cc}", []).append(
                {"group": g, "context": c, **_rate(v, denom),
                 "overall_rate": (counts.get(key("p", "g", cc, c), 0.0) / n_pairs) if n_pairs else None}
            )  # fmt: skip
    for rows in co.values():
        rows.sort(key=lambda r: (-r["k"], r["group"], r["context"]))
    overall = {col: _mean(counts, "*", "*", col) for col in score_columns}
    return {
        "captions": int(n_pairs),
        "caption_rejects_with_text": int(n_rej),
        "categories": groups_out,
        "cooccurrence": co,
        "score_means_overall": overall,
    }


def _mean(counts: dict[str, float], cat: str, g: str, col: str) -> dict[str, Any]:
    n = counts.get(key("p", "sn", cat, g, col), 0.0)
    s = counts.get(key("p", "ss", cat, g, col), 0.0)
    return {"n": int(n), "mean": (s / n) if n else None}


METHOD = """\
Captions are matched against documented term lists (report/terms/*.yaml, extended with
--terms DIR): whole words or phrases, case-insensitive, so "man" never matches "many" or
"woman". A caption counts once per group it mentions. Shares are the fraction of captions
that mention a group, with 95% Wilson score intervals. Co-occurrence is the rate at which
captions that mention a group also mention an activity, setting or occupation, next to that
context's overall rate. Reject rates at the caption stage compare caption-stage reject rows
whose text (the reject's detail) mentions a group with kept pairs that mention it. By source,
reject rates compare every clip-level reject with the kept clips of the same source.

Limits: term matching sees only what the caption says, not who is in the video; it misses
synonyms, misspellings, other languages and context ("a man-made lake" matches "man"),
and pronouns count as gender mentions. Captions written by a model carry that model's own
biases. Caption rejects carry only a short detail, not the full text, so reject rates by
group are a lower bound on what the text held. Clips dropped before captioning have no text:
their unevenness is measured by source only. Small groups have wide intervals: read the
intervals, not the point estimates, and treat this as a screening tool, not a verdict."""
"""The plain statement of method and limits printed in the report."""
